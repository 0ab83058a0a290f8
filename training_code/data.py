"""ImageFolder splits: scanning, validation, content hashing, in-memory caching and data loaders."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from contracts import datasets, images

# Staging accepts exactly these, and serving decodes them (contracts.images): a file any unit refuses
# never gets this far.
IMAGE_EXTENSIONS = images.EXTENSIONS
SPLITS = datasets.SPLITS
# Decoded uint8 images up to this size stay in memory: decoding small JPEGs every epoch costs more than
# the training step itself on a small CPU, and the whole digits sample is a few MB.
DEFAULT_CACHE_BUDGET_BYTES = 2 * 1024**3
# Eval transforms are deterministic, so their float outputs can be computed once when they are this small.
EVAL_TENSOR_BUDGET_BYTES = 1024**3


class DatasetError(Exception):
    """The dataset cannot be trained on; the message names the split, class or file at fault."""


class MissingSplitError(DatasetError):
    pass


class EmptyClassError(DatasetError):
    pass


class ClassMismatchError(DatasetError):
    pass


class UnreadableImageError(DatasetError):
    pass


@dataclass
class Split:
    name: str
    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]]
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height), from the headers

    def __len__(self) -> int:
        return len(self.samples)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def scan_split(root: str | os.PathLike, name: str) -> Split:
    """The class folders of one split and their image files, sorted; empty classes are errors."""
    root = Path(root)
    if not root.is_dir():
        raise MissingSplitError(f"{name} split not found: {root} is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not class_dirs:
        raise DatasetError(f"{name} split {root} has no class folders (expected {root}/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise EmptyClassError(
                f"class {class_dir.name!r} in the {name} split has no images ({class_dir}); "
                f"allowed extensions: {', '.join(IMAGE_EXTENSIONS)}"
            )
        samples.extend((path, label) for path in files)
    return Split(name=name, root=root, classes=[p.name for p in class_dirs], samples=samples)


def check_same_classes(splits: Sequence[Split]) -> list[str]:
    """The shared class list; every split must hold exactly the training split's classes."""
    reference = splits[0]
    for split in splits[1:]:
        if split.classes != reference.classes:
            missing = sorted(set(reference.classes) - set(split.classes))
            extra = sorted(set(split.classes) - set(reference.classes))
            raise ClassMismatchError(
                f"the {split.name} split's classes differ from the {reference.name} split's: "
                f"missing {missing or 'none'}, extra {extra or 'none'}"
            )
    return list(reference.classes)


def _open_image(path: Path, data: bytes | None = None) -> Image.Image:
    """The shared decode (contracts.images.decode), so training sees the pixels serving will see."""
    try:
        return images.decode(data if data is not None else path.read_bytes())
    except (OSError, images.ImageError) as e:
        raise UnreadableImageError(f"unreadable image {path}: {e}") from e


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """A uint8 CHW RGB tensor; any decoding failure names the file."""
    return F.pil_to_tensor(_open_image(Path(path)))


def inspect_split(split: Split) -> list[tuple[str, str]]:
    """Read every image's header (fills `split.sizes`) and return its (staged path, sha256) pairs, the
    input of contracts.datasets.dataset_hash: the manifest of the staged dataset hashes the same pairs."""
    split.sizes = []
    files: list[tuple[str, str]] = []
    for path, _label in split.samples:
        data = path.read_bytes()
        relative = path.relative_to(split.root).as_posix()
        files.append((f"{split.name}/{relative}", hashlib.sha256(data).hexdigest()))
        try:
            info = images.inspect(data)
        except images.ImageError as e:
            raise UnreadableImageError(f"unreadable image {path}: {e}") from e
        split.sizes.append((info.width, info.height))
    return files


def decoded_bytes(splits: Sequence[Split]) -> int:
    return sum(3 * w * h for split in splits for (w, h) in split.sizes)


def should_cache(mode: str, splits: Sequence[Split], budget: int = DEFAULT_CACHE_BUDGET_BYTES) -> bool:
    if mode in ("on", "off"):
        return mode == "on"
    available = _available_memory()
    if available is not None:
        budget = min(budget, available // 4)
    return decoded_bytes(splits) <= budget


def _available_memory() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def median_short_side(split: Split) -> int:
    sides = sorted(min(w, h) for (w, h) in split.sizes)
    return sides[len(sides) // 2] if sides else 0


class ImageFolderDataset(Dataset):
    """(image, label) pairs; images come decoded from memory when cached, else from disk each time."""

    def __init__(self, split: Split, transform: Callable, cache: bool = False):
        self.split = split
        self.transform = transform
        self.targets = [label for _, label in split.samples]
        self.images: list[torch.Tensor] | None = None
        if cache:
            self.images = [load_image(path) for path, _ in split.samples]

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index] if self.images is not None else load_image(self.split.samples[index][0])
        return self.transform(image), self.targets[index]


class TensorDataset(Dataset):
    """A dataset whose items were already transformed (a deterministic eval transform, computed once)."""

    def __init__(self, inputs: torch.Tensor, targets: list[int]):
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], self.targets[index]


def precompute(dataset: ImageFolderDataset, image_size: int) -> Dataset:
    """Run a deterministic transform once when its outputs fit the budget; otherwise keep it lazy."""
    if dataset.images is None or len(dataset) * 3 * image_size * image_size * 4 > EVAL_TENSOR_BUDGET_BYTES:
        return dataset
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return TensorDataset(inputs, dataset.targets)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    pin_memory: bool,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=generator,
    )
