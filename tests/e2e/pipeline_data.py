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
