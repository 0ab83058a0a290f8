"""`stepsage sample`: scikit-learn's handwritten digits as deterministic JPEGs in the dog-breed layout."""

from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

from stepsage import arguments
from stepsage.user_errors import UserError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLIT_FRACTIONS = {"train": 0.70, "valid": 0.15, "test": 0.15}
DEFAULT_SIZE = 32
JPEG_QUALITY = 90
SPLIT_SEED = 0
# Zip entries carry timestamps; a fixed one keeps the archive's bytes identical run after run.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class SampleError(UserError):
    """A sample option the dataset cannot be written with."""


def class_folder(label: int) -> str:
    """`001.zero`, like the dog-breed set's `001.Affenpinscher`."""
    return f"{label + 1:03d}.{DIGIT_NAMES[label]}"


def stratified_split(labels: list[int], seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Indices per split, each class divided in the same proportions, deterministically."""
    import numpy as np

    rng = np.random.default_rng(seed)
    result: dict[str, list[int]] = {name: [] for name in SPLIT_FRACTIONS}
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    for label in sorted(by_class):
        indices = [int(i) for i in rng.permutation(by_class[label])]
        n_valid = round(len(indices) * SPLIT_FRACTIONS["valid"])
        n_test = round(len(indices) * SPLIT_FRACTIONS["test"])
        result["valid"] += indices[:n_valid]
        result["test"] += indices[n_valid : n_valid + n_test]
        result["train"] += indices[n_valid + n_test :]
    return {name: sorted(indices) for name, indices in result.items()}


def render_digit(pixels: Any, size: int) -> bytes:
    """One 8x8 digit (values 0-16) as a `size` px RGB JPEG, dark ink on light paper."""
    import numpy as np
    from PIL import Image

    gray = (255 - np.asarray(pixels, dtype=np.float64).reshape(8, 8) * (255 / 16)).round().astype(np.uint8)
    image = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
    buffer = io.BytesIO()
    # No EXIF, no progressive scans, fixed subsampling: the encoder's output is a pure function of the pixels.
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buffer.getvalue()


def build_sample_dataset(
    out_dir: str | Path, size: int = DEFAULT_SIZE, zip_path: str | Path | None = None
) -> dict:
    """Write `out_dir/{train,valid,test}/NNN.name/name_IIII.jpg`; the same bytes on every run."""
    if size < 8:
        raise SampleError(f"--size must be at least 8 px, got {size}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = [int(t) for t in digits.target]
    splits = stratified_split(labels)
    out = Path(out_dir)
    if out.exists():
        for name in SPLIT_FRACTIONS:
            shutil.rmtree(out / name, ignore_errors=True)
    files: list[tuple[str, bytes]] = []
    for split, indices in splits.items():
        for index in indices:
            label = labels[index]
            relative = f"{split}/{class_folder(label)}/{DIGIT_NAMES[label]}_{index:04d}.jpg"
            files.append((relative, render_digit(digits.images[index], size)))
    for relative, payload in files:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "size": size,
        "classes": [class_folder(label) for label in range(len(DIGIT_NAMES))],
        "splits": {name: len(indices) for name, indices in splits.items()},
    }
    if zip_path is not None:
        summary["zip"] = str(write_zip(files, Path(zip_path), top_level=out.name or "digits"))
    return summary


def write_zip(files: list[tuple[str, bytes]], zip_path: Path, top_level: str) -> Path:
    """One top-level folder, as dogImages.zip has dogImages/train/...; sorted entries, fixed timestamps."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for relative, payload in sorted(files):
            info = zipfile.ZipInfo(f"{top_level}/{relative}", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED  # JPEGs do not compress further
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload)
    return zip_path


def _run(args: argparse.Namespace) -> int:
    summary = build_sample_dataset(args.out, size=args.size, zip_path=args.zip)
    counts = ", ".join(f"{name} {count}" for name, count in summary["splits"].items())
    classes = len(summary["classes"])
    print(f"digits sample: {classes} classes, {counts} images, {summary['size']} px in {args.out}")
    if "zip" in summary:
        print(f"zip: {summary['zip']}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample",
        help="write the digits sample dataset (ImageFolder, dog-breed layout)",
        description=__doc__,
    )
    parser.add_argument("--out", required=True, help="folder to write train/valid/test into")
    parser.add_argument("--zip", default=None, help="also write a zip with one top-level folder")
    parser.add_argument("--size", type=arguments.positive_int, default=DEFAULT_SIZE, help="image side in px")
    parser.set_defaults(func=_run)
    return parser
