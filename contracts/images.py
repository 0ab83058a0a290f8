"""What an image is: the accepted formats, how bytes are recognised and sized, and the one decode function.

Staging, training, the held-out scorers, the inference Lambda and the serving container all decide with
this module, so an image that stages also trains and serves. Sniffing and sizing use the standard library
only (the inference Lambda carries no Pillow); `decode` imports Pillow when it is called.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from contracts.limits import MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class ImageFormat:
    name: str  # Pillow's format name, the only decoder that is tried
    extensions: tuple[str, ...]
    media_type: str


JPEG = ImageFormat("JPEG", (".jpg", ".jpeg"), "image/jpeg")
PNG = ImageFormat("PNG", (".png",), "image/png")
WEBP = ImageFormat("WEBP", (".webp",), "image/webp")
BMP = ImageFormat("BMP", (".bmp",), "image/bmp")
TIFF = ImageFormat("TIFF", (".tif", ".tiff"), "image/tiff")
GIF = ImageFormat("GIF", (".gif",), "image/gif")
PPM = ImageFormat("PPM", (".ppm", ".pgm", ".pbm", ".pnm"), "image/x-portable-anymap")
# Well-trodden decoders only: every extra Pillow plugin is more parser attack surface.
FORMATS = (JPEG, PNG, WEBP, BMP, TIFF, GIF, PPM)

EXTENSIONS = tuple(extension for fmt in FORMATS for extension in fmt.extensions)
# A body sent as one of these is sniffed; image/* types that name a format are checked against the bytes.
GENERIC_MEDIA_TYPES = ("application/x-image", "application/octet-stream")
MEDIA_TYPE_ALIASES = {
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "image/x-png": PNG,
    "image/x-ms-bmp": BMP,
    "image/x-bmp": BMP,
    "image/tif": TIFF,
    "image/x-tiff": TIFF,
    "image/x-portable-pixmap": PPM,
    "image/x-portable-graymap": PPM,
    "image/x-portable-bitmap": PPM,
}
MEDIA_TYPES = (*(fmt.media_type for fmt in FORMATS), *MEDIA_TYPE_ALIASES, *GENERIC_MEDIA_TYPES)
FORMAT_NAMES = ", ".join(fmt.name for fmt in FORMATS)


class ImageError(ValueError):
    """Bytes that are not an image every unit accepts; the message says why, for the user."""


class EmptyImage(ImageError):
    pass


class NotAnImage(ImageError):
    pass


class UnsupportedFormat(ImageError):
    """A real image in a format the serving side does not decode (HEIC, JPEG 2000, ICO, ...)."""


class TooManyPixels(ImageError):
    pass


class CorruptImage(ImageError):
    pass


# ---------------------------------------------------------------------------------------- recognising


def sniff(data: bytes) -> ImageFormat | None:
    """The accepted format that the leading bytes announce, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return JPEG
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data[:2] == b"BM":
        return BMP
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if len(data) >= 3 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3] in b" \t\r\n#":
        return PPM
    return None


_KNOWN_UNSUPPORTED = (
    (lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"), "HEIC/HEIF"),
    (lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"avif", b"avis"), "AVIF"),
    (lambda d: d[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or d[:4] == b"\xff\x4f\xff\x51", "JPEG 2000"),
    (lambda d: d[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"), "ICO/CUR"),
    (lambda d: d[:4] == b"8BPS", "Photoshop PSD"),
    (lambda d: d[:4] == b"%PDF", "PDF"),
    (lambda d: d[:2] == b"\xff\x0a" or d[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (lambda d: d.lstrip()[:5] in (b"<?xml", b"<svg ") or d.lstrip()[:4] == b"<svg", "SVG"),
    (lambda d: d[:4] in (b"II\x2b\x00", b"MM\x00\x2b"), "BigTIFF"),
    (lambda d: d[:2] in (b"Pf", b"PF") or d[:2] == b"P7", "PFM/PAM"),
)


# Extensions of image formats no unit decodes, so a refusal can name the format before reading any byte.
UNSUPPORTED_EXTENSIONS = {
    ".heic": "HEIC/HEIF", ".heif": "HEIC/HEIF", ".avif": "AVIF", ".jp2": "JPEG 2000", ".j2k": "JPEG 2000",
    ".jpf": "JPEG 2000", ".jpx": "JPEG 2000", ".jxl": "JPEG XL", ".ico": "ICO/CUR", ".cur": "ICO/CUR",
    ".psd": "Photoshop PSD", ".svg": "SVG", ".tga": "TGA", ".dng": "camera raw", ".cr2": "camera raw",
    ".nef": "camera raw", ".arw": "camera raw", ".raw": "camera raw", ".pfm": "PFM/PAM", ".pam": "PFM/PAM",
}  # fmt: skip


def unsupported_format_for_filename(filename: str) -> str | None:
    lowered = filename.lower()
    for extension, name in UNSUPPORTED_EXTENSIONS.items():
        if lowered.endswith(extension):
            return name
    return None


def unsupported_format_name(data: bytes) -> str | None:
    """The name of a recognised image format that no unit decodes, for a clear refusal; else None."""
    for test, name in _KNOWN_UNSUPPORTED:
        if test(data[:32]):
            return name
    return None


def format_for_filename(filename: str) -> ImageFormat | None:
    lowered = filename.lower()
    for fmt in FORMATS:
        if lowered.endswith(fmt.extensions):
            return fmt
    return None


def has_image_extension(filename: str) -> bool:
    return format_for_filename(filename) is not None


def format_for_media_type(media_type: str) -> ImageFormat | None:
    """The format an image/* media type names; None for the generic types and for unknown ones."""
    for fmt in FORMATS:
        if fmt.media_type == media_type:
            return fmt
    return MEDIA_TYPE_ALIASES.get(media_type)


def is_image_media_type(media_type: str) -> bool:
    return media_type in MEDIA_TYPES


def media_type_for_filename(filename: str) -> str:
    """What a client sends for a file of this name: its format's own media type."""
    fmt = format_for_filename(filename)
    return fmt.media_type if fmt else GENERIC_MEDIA_TYPES[0]


# Formats an endpoint is told by name; the rest travel as application/x-image and are sniffed there.
# Endpoints deployed before a stack update serve with the inference.py their model was trained with, which
# took only these two by name, so the Lambdas that call endpoints keep to what every deployed one accepts.
ENDPOINT_NAMED_FORMATS = (JPEG, PNG)


def endpoint_media_type(fmt: ImageFormat | None) -> str:
    """The content type InvokeEndpoint gets for an image of this format."""
    return fmt.media_type if fmt in ENDPOINT_NAMED_FORMATS else GENERIC_MEDIA_TYPES[0]


def recognise(data: bytes) -> ImageFormat:
    """The format of `data` from its bytes, refusing empty bodies, non-images and unsupported formats.

    The bytes decide, not the declared media type: files saved with the wrong extension are common, and a
    client that sends any accepted image type gets its image read as what it is."""
    if not data:
        raise EmptyImage("the image is empty")
    fmt = sniff(data)
    if fmt is None:
        other = unsupported_format_name(data)
        if other:
            raise UnsupportedFormat(f"the image is {other}, which is not accepted; use one of {FORMAT_NAMES}")
        raise NotAnImage(f"the bytes are not an image in any accepted format ({FORMAT_NAMES})")
    return fmt


# --------------------------------------------------------------------------------------- header sizes


def _jpeg_size(data: bytes) -> tuple[int, int]:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {offset}")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            offset += 2
            continue
        if marker in (0xD9, 0xDA):
            raise ValueError("the JPEG has no frame header before its image data")
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + length
    raise ValueError("the JPEG ends before its frame header")


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("the PNG does not start with IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        b0, b1, b2, b3 = data[21:25]
        return 1 + (b0 | (b1 & 0x3F) << 8), 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    raise ValueError(f"unknown WebP chunk {chunk!r}")


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height means top-down rows


def _gif_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack("<HH", data[6:10])
    return width, height


def _tiff_size(data: bytes) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) from the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (256, 257):
            if kind == 3:  # SHORT
                (value,) = struct.unpack(order + "H", data[entry + 8 : entry + 10])
            elif kind == 4:  # LONG
                (value,) = struct.unpack(order + "I", data[entry + 8 : entry + 12])
            else:
                raise ValueError(f"TIFF tag {tag} has type {kind}")
            found[tag] = value
    if 256 not in found or 257 not in found:
        raise ValueError("the TIFF's first directory has no width or height")
    return found[256], found[257]


def _ppm_size(data: bytes) -> tuple[int, int]:
    tokens: list[int] = []
    position = 2
    while len(tokens) < 2:
        while position < len(data) and data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":  # a comment runs to the end of the line
            while position < len(data) and data[position : position + 1] not in (b"\n", b"\r"):
                position += 1
            continue
        start = position
        while position < len(data) and data[position : position + 1].isdigit():
            position += 1
        if start == position or position - start > 10:
            raise ValueError("the PNM header has no width and height")
        tokens.append(int(data[start:position]))
    return tokens[0], tokens[1]


_SIZERS = {
    JPEG: _jpeg_size,
    PNG: _png_size,
    WEBP: _webp_size,
    BMP: _bmp_size,
    TIFF: _tiff_size,
    GIF: _gif_size,
    PPM: _ppm_size,
}


@dataclass(frozen=True)
class ImageInfo:
    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """Format and size from the header alone: no pixel is decoded, so a bomb costs nothing here."""
    fmt = recognise(data)
    try:
        width, height = _SIZERS[fmt](data)
    except (ValueError, struct.error, IndexError) as e:
        raise CorruptImage(f"the {fmt.name} header is unreadable: {e}") from e
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the {fmt.name} header claims {width}x{height} pixels")
    info = ImageInfo(fmt, width, height)
    _check_pixels(info.width, info.height, max_pixels)
    return info


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )


# ------------------------------------------------------------------------------------------- decoding


def decode(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Any:
    """The one decode: bytes -> an 8-bit RGB Pillow image, the same in staging, training and serving.

    Orientation follows EXIF; transparency is composited on white; 16-bit and floating-point pixels are
    rescaled to 8 bits rather than clipped; CMYK, palette, grayscale and other modes convert to RGB. The
    pixel count is checked from the header before any pixel is decompressed.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    info = inspect(data, max_pixels=max_pixels)
    try:
        with Image.open(io.BytesIO(data), formats=[info.format.name]) as opened:
            _check_pixels(*opened.size, max_pixels)
            opened.load()
            return to_rgb(_upright(opened, ImageOps))
    except Image.DecompressionBombError as e:
        raise TooManyPixels(f"the image was refused as a decompression bomb: {e}") from e
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise CorruptImage(f"the {info.format.name} image is corrupt or truncated: {e}") from e
    except Exception as e:  # any other decoder failure on untrusted bytes is still a bad image
        raise CorruptImage(f"the {info.format.name} image does not decode ({type(e).__name__})") from e


def _upright(image: Any, image_ops: Any) -> Any:
    """Rotated as the EXIF orientation says; a damaged EXIF block leaves the pixels as stored."""
    try:
        return image_ops.exif_transpose(image) or image
    except Exception:  # the orientation is metadata: unreadable metadata must not refuse good pixels
        return image


def _to_8bit(image: Any) -> Any:
    """A single-band image of any depth ("I;16", "I", "F") as "L", stretched by its real range."""
    source = image if image.mode in ("I", "F") else image.convert("I")
    low, high = source.getextrema()
    if source.mode == "I" and low >= 0 and high <= 255:
        return source.convert("L")
    # A fixed scale per bit depth, so brightness means the same in every image; only floats of unknown
    # range are stretched by their own extrema.
    if image.mode.startswith("I;16") or (source.mode == "I" and low >= 0 and high <= 65535):
        low, high = 0, 65535
    elif source.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    span = (high - low) or 1
    scaled = source.convert("F").point(lambda value: (value - low) * 255.0 / span)
    return scaled.convert("L")


def to_rgb(image: Any) -> Any:
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _to_8bit(image).convert("RGB")
    return image.convert("RGB")
