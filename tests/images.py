"""Real image files made with Pillow for the photo tests (no binary fixtures in the repo)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
ORIENTATION = 0x0112
# Seoul City Hall, as a phone would write it.
GPS = {1: "N", 2: (37.0, 33.0, 59.0), 3: "E", 4: (126.0, 58.0, 41.0)}


def phone_exif(
    *, orientation: int = 1, taken: str | None = "2024:05:01 10:30:00", offset: str | None = "+09:00"
) -> Image.Exif:
    """EXIF like a phone camera writes: orientation, capture time and offset, maker, GPS."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "Samsung"
    exif[0x0110] = "Galaxy S24"
    sub = exif.get_ifd(EXIF_IFD)
    if taken:
        sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    exif.get_ifd(GPS_IFD).update(GPS)
    return exif


def _picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture with a red top-left quadrant, so a wrong rotation is visible in the pixels."""
    im = Image.new(mode, (width, height), (30, 90, 200) + ((255,) if mode == "RGBA" else ()))
    im.paste((220, 20, 20) + ((255,) if mode == "RGBA" else ()), (0, 0, width // 2, height // 2))
    return im


def jpeg(width: int = 400, height: int = 200, exif: Image.Exif | None = None, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    _picture(width, height).save(buf, "JPEG", quality=quality, exif=exif if exif is not None else b"")
    return buf.getvalue()


def png(width: int = 300, height: int = 200, *, alpha: bool = False) -> bytes:
    buf = io.BytesIO()
    _picture(width, height, "RGBA" if alpha else "RGB").save(buf, "PNG")
    return buf.getvalue()


def webp(width: int = 320, height: int = 240, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    _picture(width, height).save(buf, "WEBP", quality=90, exif=exif if exif is not None else b"")
    return buf.getvalue()


def heic(width: int = 360, height: int = 240, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": exif.tobytes()} if exif is not None else {}
    _picture(width, height).save(buf, "HEIF", quality=90, **kwargs)
    return buf.getvalue()


def gif(width: int = 64, height: int = 64) -> bytes:
    buf = io.BytesIO()
    _picture(width, height).convert("P").save(buf, "GIF")
    return buf.getvalue()


def bmp(width: int = 64, height: int = 64) -> bytes:
    buf = io.BytesIO()
    _picture(width, height).save(buf, "BMP")
    return buf.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG of about width * height * 3 bytes (for size limits)."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real decompression bomb: a valid 1-bit PNG of width x height zeros, a few tens of KB.

    Built chunk by chunk (not through Pillow) so the test never holds the decoded pixels.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    idat = b"".join(compressor.compress(row * rows_per_block) for _ in range(height // rows_per_block))
    idat += compressor.compress(row * (height % rows_per_block)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    """A JPEG cut off half-way: right magic bytes, undecodable pixels."""
    data = jpeg(800, 600)
    return data[: len(data) // 3]


def open_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def upload_photo(client: Any, auth: dict[str, str], data: bytes | None = None, **form: str) -> dict[str, Any]:
    """POST a photo (a small JPEG by default) and return the created photo."""
    r = client.post(
        "/v1/photos", headers=auth, files={"file": ("p.jpg", data or jpeg(), "image/jpeg")}, data=form
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
