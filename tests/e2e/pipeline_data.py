"""Tiny real datasets and settings small enough to run the whole pipeline on two cores."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

from stepsage.sample import build_sample_dataset

# Three digits the network tells apart within two epochs at 16 px; everything else stays small.
TINY_CLASSES = ("001.zero", "002.one", "008.seven")
TINY_PARAMETERS = {
    "MaxTrainingJobs": "2",
    "MaxParallelTrainingJobs": "2",
    "TuningStrategy": "Random",
    "Epochs": "2",
    "ImageSize": "16",
    "ExtraHyperParameters": "hflip=off patience=0",
    "ServedDataset": "tiny",
}


def _tiny_tree(root: Path, per_split: dict[str, int]) -> Path:
    full = root / "full"
    build_sample_dataset(full, size=16)
    tiny = root / "tiny"
    for split, count in per_split.items():
        for label in TINY_CLASSES:
            source = sorted((full / split / label).glob("*.jpg"))[:count]
            target = tiny / split / label
            target.mkdir(parents=True)
            for image in source:
                (target / image.name).write_bytes(image.read_bytes())
    return tiny


def zip_tree(tree: Path, destination: Path, top_level: str | None = "tiny") -> Path:
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            name = path.relative_to(tree).as_posix()
            archive.write(path, f"{top_level}/{name}" if top_level else name)
    return destination


def build_tiny_dataset(root: Path) -> tuple[Path, Path]:
    """(folder, zip) of a real three-class digits dataset: 24 train, 8 valid, 8 test images per class."""
    tree = _tiny_tree(root, {"train": 24, "valid": 8, "test": 8})
    return tree, zip_tree(tree, root / "tiny.zip")


def build_broken_zip(root: Path) -> Path:
    """A zip whose class `002.cat` holds a file that is not an image."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buffer, format="JPEG")
    path = root / "broken.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "valid", "test"):
            archive.writestr(f"{split}/001.dog/a.jpg", buffer.getvalue())
            archive.writestr(f"{split}/002.cat/b.jpg", b"this is not a JPEG at all")
    return path


def _as_format(image: Image.Image, index: int) -> tuple[str, bytes]:
    """The image re-encoded in one of the awkward forms users upload, chosen by `index`: every format
    staging accepts, plus the modes that a careless decode flattens (16-bit, palette+alpha, CMYK, EXIF)."""
    import numpy as np

    buffer = io.BytesIO()
    kind = index % 9
    if kind == 0:
        image.save(buffer, format="TIFF")
        return ".tif", buffer.getvalue()
    if kind == 1:
        image.save(buffer, format="WEBP", lossless=True)
        return ".webp", buffer.getvalue()
    if kind == 2:
        image.save(buffer, format="BMP")
        return ".bmp", buffer.getvalue()
    if kind == 3:
        image.convert("L").save(buffer, format="PPM")
        return ".pgm", buffer.getvalue()
    if kind == 4:
        image.save(buffer, format="GIF")
        return ".gif", buffer.getvalue()
    if kind == 5:  # 16-bit grayscale: a plain convert("RGB") turns it into a white square
        wide = (np.asarray(image.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(wide).save(buffer, format="PNG")
        return ".png", buffer.getvalue()
    if kind == 6:  # palette with a transparent index
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(
            buffer, format="PNG", transparency=0
        )
        return ".png", buffer.getvalue()
    if kind == 7:
        image.convert("CMYK").save(buffer, format="JPEG", quality=95)
        return ".jpeg", buffer.getvalue()
    # Stored rotated, with the EXIF orientation that turns it upright again.
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    image.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", quality=95, exif=exif)
    return ".jpg", buffer.getvalue()


def build_formats_dataset(root: Path) -> tuple[Path, Path]:
    """(folder, zip) of the tiny digits in every accepted format and awkward mode, cycling per image."""
    tree = _tiny_tree(root / "source", {"train": 24, "valid": 8, "test": 8})
    converted = root / "formats"
    for index, path in enumerate(sorted(tree.rglob("*.jpg"))):
        relative = path.relative_to(tree)
        with Image.open(path) as opened:
            suffix, data = _as_format(opened.convert("RGB"), index)
        target = converted / relative.with_suffix(suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return converted, zip_tree(converted, root / "formats.zip", top_level="formats")
