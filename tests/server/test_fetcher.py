"""The output fetcher: SSRF refusals, redirects re-checked per hop, size and time caps, content checks."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from server.generation import OutputRefused
from server.generation.fetcher import OutputFetcher
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate, tiny_mp4, tiny_webp


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate() as f:
        yield f


def fetcher_for(tmp_path: Path, **overrides: Any) -> OutputFetcher:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", **overrides)
    return OutputFetcher(settings)


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[OutputFetcher]:
    """Production rules: loopback outputs off."""
    f = fetcher_for(tmp_path)
    yield f
    await f.aclose()


@pytest.fixture
async def loopback(tmp_path: Path) -> AsyncIterator[OutputFetcher]:
    """Test mode: loopback (and http to loopback only) allowed."""
    f = fetcher_for(tmp_path, replicate_allow_loopback_outputs=True)
    yield f
    await f.aclose()


async def refused(fetcher: OutputFetcher, url: str) -> str:
    with pytest.raises(OutputRefused) as info:
        await fetcher.fetch(url)
    return str(info.value)


async def test_metadata_address_is_refused(strict: OutputFetcher) -> None:
    """The cloud metadata address is not an allowed host."""
    assert "not on the allowed list" in await refused(strict, "https://169.254.169.254/latest/meta-data/")


async def test_metadata_address_is_refused_even_when_listed(tmp_path: Path) -> None:
    """A link-local address is refused by the address check even if someone lists it as a host."""
    f = fetcher_for(tmp_path, replicate_output_hosts=["169.254.169.254"])
    try:
        message = await refused(f, "https://169.254.169.254/latest/meta-data/")
        assert "169.254.169.254, a private address" in message
    finally:
        await f.aclose()


async def test_ipv4_mapped_private_address_is_refused(tmp_path: Path) -> None:
    """An IPv4-mapped IPv6 literal of a private address does not slip through."""
    f = fetcher_for(tmp_path, replicate_output_hosts=["::ffff:10.0.0.1"])
    try:
        assert "private address" in await refused(f, "https://[::ffff:10.0.0.1]/x.webp")
    finally:
        await f.aclose()


async def test_localhost_is_refused_when_not_allowed(strict: OutputFetcher, fake: FakeReplicate) -> None:
    """Loopback outputs are refused unless the test setting allows them, by name and by address."""
    assert "only https" in await refused(strict, f"{fake.url}/files/x/output.webp")
    assert "not on the allowed list" in await refused(strict, "https://localhost/files/x/output.webp")


async def test_name_resolving_to_loopback_is_refused(tmp_path: Path) -> None:
    """A listed name whose DNS answer is a loopback address is refused after resolution."""
    f = fetcher_for(tmp_path, replicate_output_hosts=["localhost"])
    try:
        assert "a private address" in await refused(f, "https://localhost/output.webp")
    finally:
        await f.aclose()


async def test_plain_http_is_refused(strict: OutputFetcher, loopback: OutputFetcher) -> None:
    """http:// is refused for real hosts, in both modes; other schemes too."""
    assert "only https" in await refused(strict, "http://replicate.delivery/a/out.webp")
    assert "only https" in await refused(loopback, "http://replicate.delivery/a/out.webp")
    assert "only https" in await refused(strict, "ftp://replicate.delivery/a/out.webp")


async def test_credentials_in_url_are_refused(strict: OutputFetcher) -> None:
    """A URL with user:password is refused before any lookup."""
    assert "credentials" in await refused(strict, "https://u:p@replicate.delivery/a.webp")


def test_host_allow_list_matches_subdomains_only(strict: OutputFetcher) -> None:
    """`*.replicate.delivery` covers subdomains, not look-alike names."""
    assert strict.host_allowed("replicate.delivery")
    assert strict.host_allowed("pbxt.replicate.delivery")
    assert not strict.host_allowed("evilreplicate.delivery")
    assert not strict.host_allowed("replicate.delivery.evil.example")


async def test_loopback_download_sends_no_token(loopback: OutputFetcher, fake: FakeReplicate) -> None:
    """In test mode a loopback output downloads, with no Authorization header."""
    data = await loopback.fetch(f"{fake.url}/files/p1/output.webp")
    assert data == fake.files["output.webp"][0]
    assert all("authorization" not in headers for headers in fake.file_requests)


async def test_redirect_to_internal_host_is_refused(loopback: OutputFetcher, fake: FakeReplicate) -> None:
    """Each redirect hop is checked like the first: a hop to the metadata service is refused."""
    for target in ("https://169.254.169.254/latest/meta-data/", "http://169.254.169.254/latest/"):
        message = await refused(loopback, f"{fake.url}/redirect?to={target}")
        assert "not on the allowed list" in message or "only https" in message


async def test_redirect_within_rules_is_followed(loopback: OutputFetcher, fake: FakeReplicate) -> None:
    """A redirect that stays within the rules is followed."""
    data = await loopback.fetch(f"{fake.url}/redirect?to=/files/p1/output.mp4")
    assert data[4:8] == b"ftyp"


async def test_too_many_redirects_are_refused(loopback: OutputFetcher, fake: FakeReplicate) -> None:
    """A redirect loop ends after a few hops."""
    assert "redirected more than" in await refused(loopback, f"{fake.url}/redirect")


async def test_size_cap(tmp_path: Path, fake: FakeReplicate) -> None:
    """A file over generation_max_output_bytes is refused."""
    f = fetcher_for(tmp_path, replicate_allow_loopback_outputs=True, generation_max_output_bytes=100)
    try:
        assert "larger than the 100 byte limit" in await refused(f, f"{fake.url}/files/p/output.webp")
    finally:
        await f.aclose()


async def test_time_cap(tmp_path: Path, fake: FakeReplicate) -> None:
    """A download slower than generation_fetch_timeout_s is abandoned."""
    fake.file_delay_s = 2.0
    f = fetcher_for(tmp_path, replicate_allow_loopback_outputs=True, generation_fetch_timeout_s=0.3)
    try:
        assert "longer than 0.3 seconds" in await refused(f, f"{fake.url}/files/p/output.webp")
    finally:
        await f.aclose()


def test_image_content_is_checked(strict: OutputFetcher) -> None:
    """A real WebP passes; text or a GIF does not."""
    assert strict.inspect_image(tiny_webp()) == "image/webp"
    with pytest.raises(OutputRefused, match="not a picture"):
        strict.inspect_image(b"<html>not an image</html>")
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, "GIF")
    with pytest.raises(OutputRefused, match="unexpected format"):
        strict.inspect_image(gif.getvalue())


def test_video_content_is_checked_and_gives_a_poster(strict: OutputFetcher) -> None:
    """A real MP4 gives a JPEG poster of its size; an image posing as a video is refused."""
    poster = strict.inspect_video(tiny_mp4())
    with Image.open(io.BytesIO(poster)) as img:
        assert (img.format, img.size) == ("JPEG", (64, 48))
    with pytest.raises(OutputRefused, match="not an MP4"):
        strict.inspect_video(tiny_webp())
    with pytest.raises(OutputRefused, match="not a video we can read"):
        strict.inspect_video(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
