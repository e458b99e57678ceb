"""Photos API on SQLite and PostgreSQL, with real images made by Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server import images as server_images
from server import photostore
from server.app import create_app
from server.security import decode_access_token
from server.settings import Settings
from storage.models import Photo
from tests import images
from tests.conftest import dev_login, make_settings


def upload(client: TestClient, auth: dict[str, str], data: bytes, name: str = "p.jpg", **form: str) -> Any:
    return client.post(
        "/v1/photos", headers=auth, files={"file": (name, data, "application/octet-stream")}, data=form
    )


def stored_files(settings: Settings) -> list[Path]:
    root = settings.media_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def fetch(client: TestClient, auth: dict[str, str], photo: dict[str, Any], size: str) -> Any:
    r = client.get(photo["urls"][size], headers=auth)
    assert r.status_code == 200, r.text
    return r


@contextmanager
def app_with(tmp_path: Path, db_url: str, **overrides: Any) -> Iterator[tuple[TestClient, Settings]]:
    settings = make_settings(tmp_path, db_url, **overrides)
    with TestClient(create_app(settings)) as c:
        yield c, settings


def test_phone_jpeg_is_turned_upright_dated_and_stripped_of_gps(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """EXIF orientation 6 swaps width/height; GPS and all EXIF are gone from every stored file."""
    data = images.jpeg(400, 200, exif=images.phone_exif(orientation=6, offset="+02:00"))
    r = upload(client, auth, data, caption="봄 소풍")
    assert r.status_code == 201, r.text
    photo = r.json()
    assert (photo["width"], photo["height"]) == (200, 400)
    assert photo["taken_at"] == "2024-05-01T08:30:00Z"  # 10:30 at +02:00
    assert photo["caption"] == "봄 소풍"
    assert photo["content_type"] == "image/jpeg"
    assert photo["urls"]["thumb"] == f"/v1/photos/{photo['id']}/file?size=thumb"
    for size in ("original", "medium", "thumb"):
        got = fetch(client, auth, photo, size)
        assert got.headers["content-type"] == "image/jpeg"
        assert "private" in got.headers["cache-control"]
        stored = images.open_image(got.content)
        exif = stored.getexif()
        assert exif.get_ifd(images.GPS_IFD) == {}
        assert images.ORIENTATION not in exif
        assert b"Galaxy" not in got.content and b"Exif" not in got.content
    original = images.open_image(fetch(client, auth, photo, "original").content).convert("RGB")
    assert original.size == (200, 400)
    # Orientation 6 means "rotate 90 clockwise to show": the red top-left corner ends top-right.
    red, _green, blue = original.getpixel((190, 10))  # type: ignore[misc]
    assert red > 180 and blue < 80
    assert len(stored_files(settings)) == 3


def test_capture_time_without_offset_is_read_in_the_users_time_zone(
    client: TestClient, auth: dict[str, str]
) -> None:
    """DateTimeOriginal without OffsetTimeOriginal is local time in the user's zone (Asia/Seoul)."""
    r = upload(client, auth, images.jpeg(exif=images.phone_exif(offset=None)))
    assert r.status_code == 201, r.text
    assert r.json()["taken_at"] == "2024-05-01T01:30:00Z"
    r = upload(client, auth, images.png())
    assert r.json()["taken_at"] is None


@pytest.mark.parametrize(
    ("make", "stored_type"),
    [
        (lambda: images.png(300, 200, alpha=True), "image/png"),
        (lambda: images.webp(320, 240, exif=images.phone_exif()), "image/webp"),
        (lambda: images.heic(360, 240, exif=images.phone_exif(orientation=6)), "image/jpeg"),
    ],
    ids=["png", "webp", "heic"],
)
def test_png_webp_and_heic_are_accepted(
    client: TestClient, auth: dict[str, str], make: Callable[[], bytes], stored_type: str
) -> None:
    """PNG and WebP keep their format, HEIC becomes JPEG; none keeps GPS."""
    data = make()
    r = upload(client, auth, data, name="photo.bin")
    assert r.status_code == 201, r.text
    photo = r.json()
    assert photo["content_type"] == stored_type
    source = images.open_image(data)
    if source.format == "HEIF":
        # pillow-heif applies the orientation while decoding: the photo is upright (240 x 360).
        assert (photo["width"], photo["height"]) == (240, 360)
        assert photo["taken_at"] == "2024-05-01T01:30:00Z"
    else:
        assert (photo["width"], photo["height"]) == source.size
    original = fetch(client, auth, photo, "original")
    assert original.headers["content-type"] == stored_type
    stored = images.open_image(original.content)
    assert stored.getexif().get_ifd(images.GPS_IFD) == {}
    assert (stored.width, stored.height) == (photo["width"], photo["height"])
    thumb = images.open_image(fetch(client, auth, photo, "thumb").content)
    assert thumb.format == "JPEG" and thumb.mode == "RGB"


def test_variants_fit_their_boxes(client: TestClient, auth: dict[str, str]) -> None:
    """medium fits 1280 px and thumb 256 px, aspect ratio kept; small images are not upscaled."""
    photo = upload(client, auth, images.jpeg(3000, 1500)).json()
    assert images.open_image(fetch(client, auth, photo, "medium").content).size == (1280, 640)
    assert images.open_image(fetch(client, auth, photo, "thumb").content).size == (256, 128)
    assert images.open_image(fetch(client, auth, photo, "original").content).size == (3000, 1500)
    small = upload(client, auth, images.png(120, 80)).json()
    assert images.open_image(fetch(client, auth, small, "medium").content).size == (120, 80)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (images.gif(), 415),
        (images.bmp(), 415),
        (b"hello, this is not a photo", 415),
        (b"", 415),
        (images.truncated_jpeg(), 400),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 400),
        (images.bomb_png(), 413),
    ],
    ids=["gif", "bmp", "text", "empty", "truncated-jpeg", "broken-png", "decompression-bomb"],
)
def test_refused_uploads_store_nothing(
    client: TestClient, auth: dict[str, str], settings: Settings, data: bytes, status: int
) -> None:
    """Other formats (415), undecodable bytes (400) and a 400-megapixel bomb (413) leave no trace."""
    r = upload(client, auth, data)
    assert r.status_code == status, r.text
    assert stored_files(settings) == []
    assert client.get("/v1/photos", headers=auth).json() == {"items": [], "next_cursor": None}


def test_pixel_limit_comes_from_settings(tmp_path: Path, db_url: str) -> None:
    """An ordinary image over SILVERTALK_MAX_IMAGE_PIXELS is refused with 413 before decoding."""
    with app_with(tmp_path, db_url, max_image_pixels=1_000_000) as (client, settings):
        auth = dev_login(client)
        assert upload(client, auth, images.jpeg(1200, 1000)).status_code == 413
        assert stored_files(settings) == []
        assert upload(client, auth, images.jpeg(1000, 1000)).status_code == 201


def test_oversized_bodies_are_refused_and_store_nothing(tmp_path: Path, db_url: str) -> None:
    """Over max_upload_bytes: 413 from our own part check and from the body-size middleware."""
    with app_with(tmp_path, db_url, max_upload_bytes=100_000) as (client, settings):
        auth = dev_login(client)
        just_over = images.noise_png(200, 170)  # ~100-160 KB: under the middleware's +64 KiB slack
        assert 100_000 < len(just_over) < 100_000 + 64 * 1024
        r = upload(client, auth, just_over)
        assert r.status_code == 413, r.text
        far_over = images.noise_png(400, 400)
        r = upload(client, auth, far_over)
        assert r.status_code == 413, r.text
        assert stored_files(settings) == []
        assert client.get("/v1/photos", headers=auth).json()["items"] == []
        assert upload(client, auth, images.noise_png(100, 100)).status_code == 201


def test_a_capture_time_at_year_1_plus_14_is_no_date(client: TestClient, auth: dict[str, str]) -> None:
    """EXIF 0001:01:01 at +14:00 (no UTC time) or 9999 at -14:00: stored without a date, not a 500."""
    for taken, offset in (("0001:01:01 00:00:00", "+14:00"), ("9999:12:31 23:59:59", "-14:00")):
        r = upload(client, auth, images.jpeg(exif=images.phone_exif(taken=taken, offset=offset)))
        assert r.status_code == 201, r.text
        assert r.json()["taken_at"] is None


def test_oversized_chunked_upload_is_413(tmp_path: Path, db_url: str) -> None:
    """A body over the cap sent chunked (no Content-Length) answers 413, not 400, and stores nothing."""
    with app_with(tmp_path, db_url, max_upload_bytes=100_000) as (client, settings):
        auth = dev_login(client)
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'

        def chunks() -> Iterator[bytes]:
            yield head
            for _ in range(40):
                yield b"x" * 8192

        r = client.post(
            "/v1/photos",
            headers=auth | {"content-type": "multipart/form-data; boundary=b"},
            content=chunks(),
        )
        assert r.status_code == 413, r.text
        assert "larger than" in r.json()["detail"]
        assert stored_files(settings) == []


def test_list_is_newest_first_with_a_cursor(client: TestClient, auth: dict[str, str]) -> None:
    """limit/cursor walk the list newest first without repeats; bad parameters answer 422."""
    ids = [upload(client, auth, images.png(40 + i, 40)).json()["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = client.get("/v1/photos", headers=auth, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [p["id"] for p in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    assert client.get("/v1/photos", headers=auth, params={"cursor": "nonsense!"}).status_code == 422
    assert client.get("/v1/photos", headers=auth, params={"limit": 0}).status_code == 422
    assert client.get("/v1/photos", headers=auth, params={"limit": 101}).status_code == 422


def test_caption_update_and_delete_remove_row_and_files(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """PATCH changes the caption; DELETE answers 204 and removes the row and all three files."""
    photo = upload(client, auth, images.jpeg()).json()
    url = f"/v1/photos/{photo['id']}"
    r = client.patch(url, headers=auth, json={"caption": "손녀와 함께"})
    assert r.status_code == 200 and r.json()["caption"] == "손녀와 함께"
    assert client.get(url, headers=auth).json()["caption"] == "손녀와 함께"
    assert client.patch(url, headers=auth, json={"caption": "x" * 2001}).status_code == 422
    assert client.patch(url, headers=auth, json={"caption": None}).json()["caption"] is None
    assert len(stored_files(settings)) == 3
    assert client.delete(url, headers=auth).status_code == 204
    assert stored_files(settings) == []
    assert client.get(url, headers=auth).status_code == 404
    assert client.get(f"{url}/file", headers=auth).status_code == 404
    assert client.delete(url, headers=auth).status_code == 404


def test_other_users_photos_are_not_found(client: TestClient, auth: dict[str, str]) -> None:
    """Another user's photo id, a non-UUID id and a bad size all look missing; no token is 401."""
    photo = upload(client, auth, images.jpeg()).json()
    url = f"/v1/photos/{photo['id']}"
    other = dev_login(client, "lee")
    assert client.get(url, headers=other).status_code == 404
    assert client.get(f"{url}/file?size=thumb", headers=other).status_code == 404
    assert client.patch(url, headers=other, json={"caption": "mine"}).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.get("/v1/photos", headers=other).json()["items"] == []
    assert client.get("/v1/photos/not-a-uuid", headers=auth).status_code == 404
    assert client.get(f"{url}/file?size=huge", headers=auth).status_code == 422
    assert client.get(url).status_code == 401
    assert upload(client, {}, images.jpeg()).status_code == 401
    assert client.get(url, headers=auth).json()["caption"] is None


def test_save_photo_is_reusable_and_refuses_cleanly(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """photostore.save_photo (used by generation) stores a WebP with its source; a refusal stores nothing."""
    services = client.app.state.services  # type: ignore[attr-defined]
    user_id = decode_access_token(services.settings, auth["Authorization"].split()[1])

    async def save(data: bytes) -> Photo:
        async with services.sessions() as session:
            return await photostore.save_photo(
                services, session, user_id, data, caption="p" * 3000, source="generated"
            )

    assert client.portal is not None
    photo = client.portal.call(save, images.webp())
    public = photostore.photo_public(photo)
    assert public["source"] == "generated" and len(public["caption"]) == 2000
    assert public["urls"]["original"] == f"/v1/photos/{photo.id}/file?size=original"
    assert client.get(public["urls"]["original"], headers=auth).headers["content-type"] == "image/webp"
    with pytest.raises(photostore.ImageRejected) as refused:
        client.portal.call(save, images.gif())
    assert refused.value.status_code == 415
    assert len(stored_files(settings)) == 3
    assert [p["id"] for p in client.get("/v1/photos", headers=auth).json()["items"]] == [str(photo.id)]


def test_pillow_bomb_warning_is_a_refusal_even_under_a_generous_cap() -> None:
    """Between Pillow's limit and twice it Pillow only warns; images.process refuses anyway."""
    data = images.bomb_png(10_000, 10_000)  # 100 MP: over Pillow's 89.5 MP, under its error level
    with pytest.raises(server_images.TooManyPixels):
        server_images.process(data, max_pixels=10**9, max_decode_bytes=2**40, default_tz=UTC)


def test_cmyk_jpeg_becomes_rgb() -> None:
    """A CMYK JPEG (print workflows) is stored as RGB, with its CMYK profile dropped."""
    buf = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(buf, "JPEG", icc_profile=b"not-an-rgb-profile")
    processed = server_images.process(
        buf.getvalue(), max_pixels=10**6, max_decode_bytes=2**30, default_tz=UTC
    )
    stored = images.open_image(processed.original)
    assert stored.mode == "RGB" and "icc_profile" not in stored.info
    red, green, _blue = stored.getpixel((10, 10))  # type: ignore[misc]
    assert red > 200 and green < 60
