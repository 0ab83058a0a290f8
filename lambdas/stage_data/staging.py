"""Pure staging decisions: entry names, layout, classes, the split, limits, capacity, hash and manifest."""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from dataset_errors import DatasetTooLargeError, DatasetValidationError
from image_check import IMAGE_EXTENSIONS, PILLOW_HARD_PIXEL_LIMIT, has_image_extension

from contracts import datasets, junk
from contracts.images import FORMAT_NAMES, unsupported_format_for_filename
from contracts.limits import MAX_IMAGE_PIXELS
from stepsage_lambda.settings import declared

SPLITS = datasets.SPLITS
CARVED_SPLITS = ("valid", "test")
JUNK_NAMES = junk.JUNK_NAMES
junk_reason = junk.junk_reason
# Files a dataset's publisher puts beside train/ (or beside the class folders): left out with a notice.
ROOT_DOCUMENT = re.compile(
    r"^(readme|license|licence|copying|notice|citation|authors|credits|changelog)([._ -].*)?$", re.IGNORECASE
)
ROOT_DOCUMENT_REASON = "a document at the dataset root (README, LICENSE, ...), not an image: left out"
MAX_NAME_PART_BYTES = 255  # the longest file name SageMaker's File mode can write to local disk
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# Unicode categories refused in names: control characters (C0, DEL, C1) and line and paragraph separators.
REFUSED_CATEGORIES = {"Cc": "a control character", "Zl": "a line separator", "Zp": "a paragraph separator"}

# Lambda hard limits, and throughput assumed for the time estimate (docs/staging.md explains them).
LAMBDA_MAX_SECONDS = 900
TIME_MARGIN_SECONDS = 60
TMP_MARGIN_BYTES = 64 * 1024 * 1024
ASSUMED_DOWNLOAD_BYTES_PER_SECOND = 50e6
ASSUMED_UPLOAD_BYTES_PER_SECOND = 50e6
ASSUMED_SECONDS_PER_IMAGE = {"zip": 0.01, "folder": 0.015}
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class StagingLimits:
    max_entries: int = 50_000
    max_entry_bytes: int = 32 * 1024 * 1024
    max_total_bytes: int = 3 * 1024**3
    max_image_pixels: int = 25_000_000
    max_compression_ratio: float = 200.0
    ratio_floor_bytes: int = 1024 * 1024

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "MAX_ENTRIES",
        "MAX_ENTRY_BYTES",
        "MAX_TOTAL_BYTES",
        "MAX_IMAGE_PIXELS",
        "MAX_COMPRESSION_RATIO",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StagingLimits:
        env = declared(env, cls)
        defaults = cls()
        limits = cls(
            max_entries=_positive_int(env, "MAX_ENTRIES", defaults.max_entries),
            max_entry_bytes=_positive_int(env, "MAX_ENTRY_BYTES", defaults.max_entry_bytes),
            max_total_bytes=_positive_int(env, "MAX_TOTAL_BYTES", defaults.max_total_bytes),
            max_image_pixels=_positive_int(env, "MAX_IMAGE_PIXELS", defaults.max_image_pixels),
            max_compression_ratio=float(env.get("MAX_COMPRESSION_RATIO", defaults.max_compression_ratio)),
        )
        if PILLOW_HARD_PIXEL_LIMIT and limits.max_image_pixels >= PILLOW_HARD_PIXEL_LIMIT:
            raise ValueError(
                f"MAX_IMAGE_PIXELS must stay below Pillow's hard limit {PILLOW_HARD_PIXEL_LIMIT}"
            )
        if limits.max_image_pixels > MAX_IMAGE_PIXELS:
            # Serving refuses larger images, so a model would train on images its endpoint cannot take.
            raise ValueError(f"MAX_IMAGE_PIXELS must not exceed the serving limit {MAX_IMAGE_PIXELS}")
        if limits.max_compression_ratio <= 1:
            raise ValueError("MAX_COMPRESSION_RATIO must be greater than 1")
        return limits


@dataclass(frozen=True)
class SplitSettings:
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42

    ENV_VARS: ClassVar[tuple[str, ...]] = ("VALID_FRACTION", "TEST_FRACTION", "SPLIT_SEED")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SplitSettings:
        env = declared(env, cls)
        defaults = cls()
        settings = cls(
            valid_fraction=float(env.get("VALID_FRACTION", defaults.valid_fraction)),
            test_fraction=float(env.get("TEST_FRACTION", defaults.test_fraction)),
            seed=int(env.get("SPLIT_SEED", defaults.seed)),
        )
        fractions = (settings.valid_fraction, settings.test_fraction)
        if not all(0 < fraction < 1 for fraction in fractions) or sum(fractions) >= 1:
            raise ValueError(
                "VALID_FRACTION and TEST_FRACTION must each lie in (0, 1) and sum to less than 1"
            )
        return settings


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = int(env.get(name, default))
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


@dataclass(frozen=True)
class IgnoredEntry:
    path: str
    reason: str


@dataclass(frozen=True)
class PlannedImage:
    source_name: str
    split: str
    label: str
    filename: str


@dataclass(frozen=True)
class LayoutPlan:
    images: tuple[PlannedImage, ...]
    labels: tuple[str, ...]
    present_splits: tuple[str, ...]
    top_level: str | None
    ignored: tuple[IgnoredEntry, ...]
    layout: Literal["split", "flat"] = "split"


@dataclass(frozen=True)
class StagedImage:
    path: str
    source: str
    label: str
    channel: str
    size: int
    sha256: str
    format: str
    width: int
    height: int


def normalize_entry_name(name: str) -> tuple[str, ...]:
    """The NFC path parts of an archive entry or object key, or a rejection for unsafe names (zip-slip).

    NFC, not case folding: macOS writes names decomposed (NFD) and most other tools composed, so the same
    class typed on two machines is one class, while `Cat` and `cat` stay two classes, as on Linux.
    """
    if "\\" in name:
        raise DatasetValidationError(f"entry {name!r} uses backslashes; use '/' separators", entry=name)
    if name.startswith("/") or WINDOWS_DRIVE.match(name):
        raise DatasetValidationError(f"entry {name!r} is an absolute path", entry=name)
    parts = tuple(unicodedata.normalize("NFC", part) for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise DatasetValidationError(
            f"entry {name!r} climbs out of the dataset with '..' (zip-slip)", entry=name
        )
    for part in parts:
        if junk.listed_reason(part):  # "Icon\r", macOS's folder icon, is clutter to skip, not a bad name
            continue
        refused = _refused_character(part)
        if refused:
            raise DatasetValidationError(
                f"entry {name!r} has control characters in its name ({refused})", entry=name
            )
        if len(part.encode("utf-8")) > MAX_NAME_PART_BYTES:
            raise DatasetValidationError(
                f"entry {name!r} has a name part longer than {MAX_NAME_PART_BYTES} bytes", entry=name
            )
    return parts


def _refused_character(part: str) -> str | None:
    for character in part:
        kind = REFUSED_CATEGORIES.get(unicodedata.category(character))
        if kind:
            return f"{kind} (U+{ord(character):04X})"
    return None


def plan_layout(entries: Iterable[tuple[str, bool]]) -> LayoutPlan:
    """Check the layout: `split/class/image` or, with no split folder, ImageFolder's flat `class/image`
    (then every image is train/ and the split carves valid/ and test/), under one optional top-level folder.
    `entries` are (name, is_dir). Clutter and root documents are left out and listed in `ignored`."""
    kept: list[tuple[str, tuple[str, ...], bool]] = []
    ignored: list[IgnoredEntry] = []
    for name, is_dir in entries:
        parts = normalize_entry_name(name)
        reason = junk_reason(parts)
        if reason:
            ignored.append(IgnoredEntry(name, reason))
        elif parts:
            kept.append((name, parts, is_dir))
    kept = [entry for entry in kept if not _root_document(entry, 0, ignored)]
    top_level = _top_level_folder([parts for _, parts, _ in kept])
    depth = 1 if top_level else 0
    if top_level:
        kept = [entry for entry in kept if not _root_document(entry, 1, ignored)]
    relative = [(name, parts[depth:], is_dir) for name, parts, is_dir in kept if parts[depth:]]
    layout = _layout_kind(relative, top_level)
    if layout == "flat":
        relative = [(name, ("train", *parts), is_dir) for name, parts, is_dir in relative]
    classes: dict[str, dict[str, int]] = defaultdict(dict)
    images: list[PlannedImage] = []
    staged_by: dict[tuple[str, str, str], str] = {}
    for name, parts, is_dir in relative:
        if parts[0] not in SPLITS:
            raise DatasetValidationError(
                f"entry {name!r} is outside train/, valid/ and test/ (only one top-level folder is allowed; "
                "without split folders every image must sit in a class folder: <class>/<image>)",
                entry=name,
            )
        split = parts[0]
        classes.setdefault(split, {})
        if is_dir:
            if len(parts) > 2:
                raise DatasetValidationError(
                    f"folder {name!r} is nested too deep; expected {split}/<class>/<image>", entry=name
                )
            if len(parts) == 2:
                classes[split].setdefault(parts[1], 0)
            continue
        if len(parts) != 3:
            raise DatasetValidationError(
                f"file {name!r} is at the wrong depth; expected {split}/<class>/<image>", entry=name
            )
        _check_image_name(name, parts[2])
        label = parts[1]
        other = staged_by.get((split, label, parts[2]))
        if other is not None:
            raise DatasetValidationError(
                f"entries {other!r} and {name!r} are the same file once their paths are normalized "
                f"(Unicode NFC, '.' and empty folders dropped): both would be staged as "
                f"{staged_path(split, label, parts[2])!r}; keep one",
                entry=name,
            )
        staged_by[(split, label, parts[2])] = name
        classes[split][label] = classes[split].get(label, 0) + 1
        images.append(PlannedImage(name, split, label, parts[2]))
    labels = _check_classes(classes)
    present = tuple(split for split in SPLITS if split in classes)
    return LayoutPlan(tuple(images), labels, present, top_level, tuple(ignored), layout)


def _check_image_name(name: str, filename: str) -> None:
    unsupported = unsupported_format_for_filename(filename)
    if unsupported:
        raise DatasetValidationError(
            f"file {name!r} is {unsupported}, a format the endpoint cannot decode; convert it to one of "
            f"{FORMAT_NAMES}",
            entry=name,
        )
    if not has_image_extension(filename):
        raise DatasetValidationError(
            f"file {name!r} is not an image (allowed extensions: {', '.join(IMAGE_EXTENSIONS)})",
            entry=name,
        )


def _root_document(entry: tuple[str, tuple[str, ...], bool], depth: int, ignored: list[IgnoredEntry]) -> bool:
    name, parts, is_dir = entry
    if is_dir or len(parts) != depth + 1 or not ROOT_DOCUMENT.match(parts[-1]):
        return False
    ignored.append(IgnoredEntry(name, ROOT_DOCUMENT_REASON))
    return True


def _layout_kind(
    relative: Sequence[tuple[str, tuple[str, ...], bool]], top_level: str | None
) -> Literal["split", "flat"]:
    """ "flat" when no entry starts with a split folder and every file is <class>/<image>."""
    if any(parts[0] in SPLITS for _, parts, _ in relative):
        return "split"
    files = [(name, parts) for name, parts, is_dir in relative if not is_dir]
    if files and all(len(parts) == 1 for _, parts in files):
        where = f"the folder {top_level!r}" if top_level else "the archive's root"
        raise DatasetValidationError(
            f"every image sits directly in {where}, with no class folders: a classifier needs at least two "
            "classes, as <class>/<image> or train/<class>/<image>",
            entry=files[0][0],
        )
    if (
        files
        and all(len(parts) == 2 for _, parts in files)
        and all(len(parts) == 1 for _, parts, is_dir in relative if is_dir)
    ):
        return "flat"
    return "split"


def _top_level_folder(all_parts: Sequence[tuple[str, ...]]) -> str | None:
    firsts = {parts[0] for parts in all_parts}
    if len(firsts) != 1:
        return None
    (first,) = firsts
    if first in SPLITS or not any(len(parts) > 1 for parts in all_parts):
        return None
    return first


def _check_classes(classes: Mapping[str, Mapping[str, int]]) -> tuple[str, ...]:
    if "train" not in classes:
        found = ", ".join(sorted(classes)) or "nothing"
        raise DatasetValidationError(f"no train/ folder in the dataset (found {found}); train/ is required")
    for split in SPLITS:
        for label, count in sorted(classes.get(split, {}).items()):
            if count == 0:
                raise DatasetValidationError(
                    f"class {label!r} in {split}/ has no images", entry=f"{split}/{label}"
                )
    labels = sorted(classes["train"])
    if not labels:
        raise DatasetValidationError("train/ has no class folders")
    if len(labels) < 2:
        raise DatasetValidationError(
            f"the dataset has one class ({labels[0]!r}); a classifier needs at least two class folders",
            entry=f"train/{labels[0]}",
        )
    for split in CARVED_SPLITS:
        if split not in classes:
            continue
        missing = sorted(set(labels) - set(classes[split]))
        extra = sorted(set(classes[split]) - set(labels))
        if missing or extra:
            raise DatasetValidationError(
                f"class folders differ between train/ and {split}/: missing from {split}/: {missing}; "
                f"only in {split}/: {extra}",
                entry=split,
            )
    return tuple(labels)


def plan_channels(plan: LayoutPlan, settings: SplitSettings) -> dict[str, str]:
    """Map each image's source name to its channel, carving missing valid/test out of train per class.

    The carve is stratified and depends only on file names and the seed, so the same upload always
    splits the same way.
    """
    carve = [split for split in CARVED_SPLITS if split not in plan.present_splits]
    fractions = {"valid": settings.valid_fraction, "test": settings.test_fraction}
    channels = {image.source_name: image.split for image in plan.images}
    if not carve:
        return channels
    train_by_label: dict[str, list[PlannedImage]] = defaultdict(list)
    for image in plan.images:
        if image.split == "train":
            train_by_label[image.label].append(image)
    for label in plan.labels:
        members = sorted(train_by_label[label], key=lambda image: image.filename)
        random.Random(f"{settings.seed}:{label}").shuffle(members)
        takes = {split: max(1, math.floor(len(members) * fractions[split] + 0.5)) for split in carve}
        if len(members) - sum(takes.values()) < 1:
            needed = sum(takes.values()) + 1
            raise DatasetValidationError(
                f"class {label!r} has {len(members)} images in train/; at least {needed} are needed to carve "
                f"{' and '.join(split + '/' for split in carve)} out of it",
                entry=f"train/{label}",
            )
        start = 0
        for split in carve:
            for image in members[start : start + takes[split]]:
                channels[image.source_name] = split
            start += takes[split]
    return channels


staged_path = datasets.staged_path


@dataclass(frozen=True)
class Workload:
    kind: str  # "zip" or "folder"
    images: int
    image_bytes: int  # as declared by the archive or listed by S3; used only to refuse early
    source_bytes: int


def estimate_seconds(workload: Workload) -> float:
    transfer = workload.source_bytes / ASSUMED_DOWNLOAD_BYTES_PER_SECOND
    if workload.kind == "zip":
        transfer += workload.image_bytes / ASSUMED_UPLOAD_BYTES_PER_SECOND
    return transfer + workload.images * ASSUMED_SECONDS_PER_IMAGE[workload.kind]


def check_capacity(
    workload: Workload, limits: StagingLimits, *, seconds_left: float, tmp_free_bytes: int | None
) -> None:
    """Refuse, before any image is read, a dataset that cannot finish in this function; say what to do."""
    if workload.image_bytes > limits.max_total_bytes:
        raise DatasetTooLargeError(
            f"dataset holds {_gb(workload.image_bytes)} of images; Lambda staging takes at most "
            f"{_gb(limits.max_total_bytes)} (MAX_TOTAL_BYTES). Raise MAX_TOTAL_BYTES (with EphemeralStorage, "
            "up to 10 GB) or split the dataset into several uploads"
        )
    if (
        workload.kind == "zip"
        and tmp_free_bytes is not None
        and workload.image_bytes > tmp_free_bytes - TMP_MARGIN_BYTES
    ):
        raise DatasetTooLargeError(
            f"unpacking needs {_gb(workload.image_bytes)} of /tmp but only {_gb(tmp_free_bytes)} is free. "
            "Raise the function's EphemeralStorage (at most 10240 MB) or upload the images as a folder under "
            "datasets/<name>/ closed by a _READY marker (folder staging copies inside S3, with no /tmp)"
        )
    estimate = estimate_seconds(workload)
    if estimate > seconds_left - TIME_MARGIN_SECONDS:
        raise DatasetTooLargeError(
            f"staging {workload.images} images ({_gb(workload.image_bytes)}) is estimated at "
            f"{estimate:.0f} s, but the function has {seconds_left:.0f} s left (Lambda stops at "
            f"{LAMBDA_MAX_SECONDS} s). Upload the images as a folder closed by _READY, or split the dataset "
            "into several uploads"
        )


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB ({size} bytes)"


dataset_hash = datasets.dataset_hash


def count_channels(images: Iterable[StagedImage]) -> dict[str, int]:
    counts = dict.fromkeys(SPLITS, 0)
    for image in images:
        counts[image.channel] += 1
    return counts


@dataclass(frozen=True)
class ManifestContext:
    dataset_name: str
    execution_name: str
    source: Mapping[str, Any]
    limits: StagingLimits
    split: SplitSettings
    top_level: str | None
    carved: tuple[str, ...]
    ignored: tuple[IgnoredEntry, ...] = field(default=())
    layout: str = "split"


def build_manifest(
    context: ManifestContext, labels: Sequence[str], images: Sequence[StagedImage]
) -> dict[str, Any]:
    ordered = sorted(images, key=lambda image: image.path)
    return {
        "version": MANIFEST_VERSION,
        "dataset_name": context.dataset_name,
        "execution_name": context.execution_name,
        "dataset_hash": dataset_hash((image.path, image.sha256) for image in ordered),
        "source": dict(context.source),
        "top_level_folder": context.top_level,
        "layout": context.layout,
        "labels": list(labels),
        "counts": count_channels(ordered),
        "split": {
            "created": bool(context.carved),
            "carved_channels": list(context.carved),
            "valid_fraction": context.split.valid_fraction,
            "test_fraction": context.split.test_fraction,
            "seed": context.split.seed,
        },
        "limits": asdict(context.limits),
        "files": [asdict(image) for image in ordered],
        "ignored": [asdict(entry) for entry in context.ignored],
        "ignored_count": len(context.ignored),
    }
