"""Staging's image check: the shared decode (contracts.images), with errors that name the entry."""

from __future__ import annotations

from dataclasses import dataclass

from dataset_errors import DatasetValidationError
from PIL import Image

from contracts import images

IMAGE_EXTENSIONS = images.EXTENSIONS

# Pillow refuses images above twice its own MAX_IMAGE_PIXELS in open(); our limit must sit below that.
PILLOW_HARD_PIXEL_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 0) or None


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


has_image_extension = images.has_image_extension


def sniff_format(head: bytes) -> str | None:
    """The Pillow format name that the leading bytes announce, or None."""
    fmt = images.sniff(head)
    return fmt.name if fmt else None


def inspect_image(data: bytes, name: str, *, max_pixels: int) -> ImageInfo:
    """Prove `data` decodes exactly as training and serving will decode it (contracts.images.decode),
    within `max_pixels`; the error names the entry and, for a format serving cannot read, the format."""
    fmt = images.sniff(data)
    try:
        info = images.inspect(data, max_pixels=max_pixels)
        images.decode(data, max_pixels=max_pixels)
    except images.TooManyPixels as e:
        claimed = _claimed_pixels(data)
        if PILLOW_HARD_PIXEL_LIMIT and claimed is not None and claimed >= PILLOW_HARD_PIXEL_LIMIT:
            raise DatasetValidationError(
                f"{name} has more pixels than Pillow's hard limit of {PILLOW_HARD_PIXEL_LIMIT} "
                "(decompression bomb)",
                entry=name,
            ) from e
        raise DatasetValidationError(f"{name}: {e} (MAX_IMAGE_PIXELS)", entry=name) from e
    except images.UnsupportedFormat as e:
        raise DatasetValidationError(
            f"{name} is {images.unsupported_format_name(data)}, a format the endpoint cannot decode; "
            f"convert it to one of {images.FORMAT_NAMES}",
            entry=name,
        ) from e
    except (images.NotAnImage, images.EmptyImage) as e:
        raise DatasetValidationError(
            f"{name} is not an image (unrecognised leading bytes; accepted: {images.FORMAT_NAMES})",
            entry=name,
        ) from e
    except images.ImageError as e:
        kind = fmt.name if fmt else "an image"
        raise DatasetValidationError(f"{name} does not decode as {kind} ({e})", entry=name) from e
    return ImageInfo(info.format.name, info.width, info.height)


def _claimed_pixels(data: bytes) -> int | None:
    try:
        info = images.inspect(data, max_pixels=2**63)
    except images.ImageError:
        return None
    return info.pixels
