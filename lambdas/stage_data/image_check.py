"""Image checks: magic bytes, a pixel count read from the header, then a full decode with Pillow."""

from __future__ import annotations

import io
from dataclasses import dataclass

from dataset_errors import DatasetValidationError
from PIL import Image

# torchvision's ImageFolder only loads these extensions, so anything else would silently vanish in training.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")

# Pillow refuses images above twice its own MAX_IMAGE_PIXELS in open(); our limit must sit below that.
PILLOW_HARD_PIXEL_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 0) or None


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def has_image_extension(filename: str) -> bool:
    return filename.lower().endswith(IMAGE_EXTENSIONS)


def sniff_format(head: bytes) -> str | None:
    """The Pillow format name that the leading bytes announce, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PPM"
    return None


def inspect_image(data: bytes, name: str, *, max_pixels: int) -> ImageInfo:
    """Prove `data` is one decodable image within `max_pixels`; the error names the entry."""
    image_format = sniff_format(data[:16])
    if image_format is None:
        raise DatasetValidationError(f"{name} is not an image (unrecognised leading bytes)", entry=name)
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            # The header alone gives the size, so a pixel bomb is refused before any decoding.
            if width * height > max_pixels:
                raise DatasetValidationError(
                    f"{name} is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
                    "(MAX_IMAGE_PIXELS)",
                    entry=name,
                )
            image.verify()
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            image.load()
    except Image.DecompressionBombError as e:
        raise DatasetValidationError(
            f"{name} has more pixels than Pillow's hard limit of {PILLOW_HARD_PIXEL_LIMIT} "
            "(decompression bomb)",
            entry=name,
        ) from e
    except DatasetValidationError:
        raise
    except Exception as e:  # any decoder failure on untrusted bytes means "not an image"
        raise DatasetValidationError(
            f"{name} does not decode as {image_format} ({type(e).__name__})", entry=name
        ) from e
    return ImageInfo(image_format, width, height)
