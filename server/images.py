"""Photo processing with Pillow: sniff, open safely, orient, strip metadata, make the variants.

Blocking and CPU-heavy: call `process` from a worker thread, never on the event loop.

Exceptions::

    ServerError
    └── ImageError                 an upload we refuse
        ├── UnsupportedFormat      not JPEG, PNG, WebP or HEIC/HEIF (by its magic bytes)
        ├── CorruptImage           looks like a supported format but does not decode
        └── TooManyPixels          over the pixel cap: a decompression bomb or simply too big

Privacy design: every stored file, the "original" included, is re-encoded from decoded pixels with
no EXIF, XMP or text chunks at all, so GPS and camera serial numbers never reach storage. The
orientation is applied to the pixels first, so width/height are the displayed ones. What we keep is
the ICC colour profile (colour fidelity, no personal data) and the capture time, which goes into the
database. JPEG stays JPEG (quality 95), PNG stays PNG (lossless), WebP stays WebP (quality 95) and
HEIC/HEIF becomes JPEG (quality 95), which every browser and phone can show.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from server import ServerError

# Registering a decoder plugin is Pillow's own import-time pattern; it holds no state of ours.
pillow_heif.register_heif_opener()

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
MEDIUM_SIZE = 1280
THUMB_SIZE = 256
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
# (stored original format, content type, file extension) per input format.
_ORIGINAL = {
    "JPEG": ("JPEG", "image/jpeg", "jpg"),
    "PNG": ("PNG", "image/png", "png"),
    "WEBP": ("WEBP", "image/webp", "webp"),
    "HEIF": ("JPEG", "image/jpeg", "jpg"),
}
EXTENSIONS = {content_type: ext for _, content_type, ext in _ORIGINAL.values()}
# warnings.catch_warnings() swaps process-wide state; serialise the (header-only, cheap) open.
_open_lock = threading.Lock()

# Capture times outside these years are unset clocks, not dates.
_MIN_YEAR, _MAX_YEAR = 1900, 2200
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011


class ImageError(ServerError):
    """An image we refuse to store."""


class UnsupportedFormat(ImageError):
    pass


class CorruptImage(ImageError):
    pass


class TooManyPixels(ImageError):
    pass


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """The three files to store and what the database records about them."""

    width: int  # displayed width, after EXIF orientation
    height: int
    taken_at: datetime | None  # aware; None when the image carries no usable capture time
    content_type: str  # of `original`
    extension: str  # of `original`, without the dot
    original: bytes
    medium: bytes  # JPEG fitting MEDIUM_SIZE x MEDIUM_SIZE
    thumb: bytes  # JPEG fitting THUMB_SIZE x THUMB_SIZE


def sniff(data: bytes) -> str | None:
    """The Pillow format name for the magic bytes of a format we accept, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF"
    return None


def process(data: bytes, *, max_pixels: int, max_decode_bytes: int, default_tz: tzinfo) -> ProcessedImage:
    """Decode `data` and produce the stored files; raise an ImageError subclass to refuse it.

    `default_tz` places an EXIF capture time that has no OffsetTimeOriginal (the user's zone).
    Memory: the decoded pixels (at most `max_decode_bytes`, checked from the header before any
    pixel is decoded) plus an encoder's buffers; a turned photo briefly holds two copies. The full
    size image is shrunk in place to the medium size once the original is encoded.
    """
    fmt = sniff(data)
    if fmt is None:
        raise UnsupportedFormat("Only JPEG, PNG, WebP and HEIC/HEIF images are accepted")
    try:
        im = _open(data, fmt, max_pixels, max_decode_bytes)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooManyPixels(f"Image has too many pixels (limit {max_pixels})") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise CorruptImage("The image could not be read") from e
    with im:
        taken_at = _taken_at(im, default_tz)
        try:
            im.load()
            # In place: no second full-size copy for the (usual) photo that needs no turning.
            ImageOps.exif_transpose(im, in_place=True)
        except (OSError, ValueError, SyntaxError) as e:
            raise CorruptImage("The image could not be decoded") from e
        shown: Image.Image = im
        # Drop every piece of metadata Pillow carried over (exif, xmp, text chunks) but the colour profile.
        icc = shown.info.get("icc_profile")
        transparency = shown.info.get("transparency")
        shown.info = {}
        if transparency is not None and shown.mode in ("P", "L", "RGB"):
            shown.info["transparency"] = transparency
        if shown.mode == "CMYK":
            # A CMYK profile would be wrong on the RGB pixels we write.
            shown, icc = shown.convert("RGB"), None
        width, height, mode = shown.width, shown.height, shown.mode
        out_format, content_type, extension = _ORIGINAL[fmt]
        try:
            original = _encode_original(shown, out_format, icc)
            # Shrink in place: the full-size pixels go before the variants are made.
            medium_im = _medium(shown)
            medium = _encode_jpeg(medium_im, 85, icc)
            thumb = _encode_jpeg(_shrink(medium_im.copy(), THUMB_SIZE), 80, icc)
        except (OSError, ValueError) as e:  # exotic pixel modes Pillow cannot convert or encode
            raise CorruptImage(f"Images with pixel mode {mode} are not supported") from e
    return ProcessedImage(
        width=width,
        height=height,
        taken_at=taken_at,
        content_type=content_type,
        extension=extension,
        original=original,
        medium=medium,
        thumb=thumb,
    )


def _open(data: bytes, fmt: str, max_pixels: int, max_decode_bytes: int) -> Image.Image:
    with _open_lock, warnings.catch_warnings():
        # Pillow only warns between its own limit and twice it; make that a refusal too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data), formats=[fmt])
    # Our own caps, read from the header before any pixel is decoded.
    pixels = im.width * im.height
    if pixels > max_pixels:
        im.close()
        raise TooManyPixels(f"Image has {pixels} pixels; the limit is {max_pixels}")
    decoded = pixels * decoded_pixel_bytes(im.mode)
    if decoded > max_decode_bytes:
        im.close()
        raise TooManyPixels(
            f"Image would take {decoded // 2**20} MiB to decode; the limit is {max_decode_bytes // 2**20} MiB"
        )
    return im


def decoded_pixel_bytes(mode: str) -> int:
    """Bytes Pillow keeps per pixel in `mode`: 1 for L/P/1, 2 for 16-bit grey, 4 for everything else
    (RGB too: Pillow stores it as RGBX)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _taken_at(im: Image.Image, default_tz: tzinfo) -> datetime | None:
    try:
        exif = im.getexif().get_ifd(_EXIF_IFD)
    except Exception:  # malformed EXIF must not refuse an otherwise good photo
        return None
    raw = exif.get(_DATETIME_ORIGINAL)
    if not isinstance(raw, str):
        return None
    try:
        naive = datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None  # "0000:00:00 00:00:00" and other placeholders
    offset = exif.get(_OFFSET_TIME_ORIGINAL)
    tz = _parse_offset(offset) if isinstance(offset, str) else None
    taken = naive.replace(tzinfo=tz or default_tz)
    try:
        # Year 1 at +14:00 has no UTC time (stored in UTC); a camera clock that far off is no date.
        if not _MIN_YEAR <= taken.astimezone(UTC).year <= _MAX_YEAR:
            return None
    except OverflowError:
        return None
    return taken


def _parse_offset(value: str) -> tzinfo | None:
    value = value.strip("\x00 ")
    if len(value) != 6 or value[0] not in "+-" or value[3] != ":":
        return None
    try:
        minutes = int(value[1:3]) * 60 + int(value[4:6])
    except ValueError:
        return None
    if minutes > 14 * 60:
        return None
    return timezone(timedelta(minutes=minutes if value[0] == "+" else -minutes))


def _flatten(im: Image.Image) -> Image.Image:
    """RGB (or L) pixels for JPEG: transparent areas become white, not black."""
    if im.mode in ("RGB", "L"):
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _encode_original(im: Image.Image, out_format: str, icc: bytes | None) -> bytes:
    buf = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if out_format == "JPEG":
        # No optimize=True at full size: libjpeg would buffer every DCT coefficient (6 bytes a pixel).
        _flatten(im).save(buf, "JPEG", quality=95, **extra)
    elif out_format == "WEBP":
        pixels = im if im.mode in ("RGB", "RGBA") else im.convert("RGBA" if "A" in im.getbands() else "RGB")
        pixels.save(buf, "WEBP", quality=95, method=4, **extra)
    else:
        im.save(buf, "PNG", **extra)
    return buf.getvalue()


def _medium(im: Image.Image) -> Image.Image:
    """The medium variant as RGB or L, made from `im` in place.

    These modes resample well as they are (alpha premultiplied), so they shrink before flattening
    and no second full-size image is made; palette and other modes flatten first.
    """
    if im.mode in ("RGB", "RGBA", "L", "LA"):
        return _flatten(_shrink(im, MEDIUM_SIZE))
    return _shrink(_flatten(im), MEDIUM_SIZE)


def _shrink(im: Image.Image, box: int) -> Image.Image:
    """`im` made to fit box x box, in place (its full-size pixels are released)."""
    im.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return im


def _encode_jpeg(im: Image.Image, quality: int, icc: bytes | None) -> bytes:
    buf = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    _flatten(im).save(buf, "JPEG", quality=quality, optimize=True, **extra)
    return buf.getvalue()
