"""Dataset keys, names, staged layout and the dataset hash: the identity of what a model trained on."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

PREFIX = "datasets/"
ARCHIVE_SUFFIX = ".zip"  # matched in any case: Windows, cameras and some zip tools write ".ZIP"
READY_MARKER = "_READY"
# The EventBridge rule's object-key filter (template.yaml; EventBridge's `wildcard` is case-sensitive). It
# delivers what can start a run and what the start Lambda explains when it cannot: every key at most one
# folder deep (so each top-level object of datasets/), zips and markers at any depth in any case, and the
# marker saved by a text editor. The objects inside a folder upload do not invoke the Lambda at all.
EVENT_KEY_FILTER: tuple[dict[str, object], ...] = (
    {"anything-but": {"wildcard": "*/*/*"}},
    {"suffix": {"equals-ignore-case": ARCHIVE_SUFFIX}},
    {"suffix": {"equals-ignore-case": f"/{READY_MARKER}"}},
    {"wildcard": f"*/{READY_MARKER}.*"},
)

# A dataset name is a path segment of the Function URL (POST /<name>), part of S3 keys and of the names
# SageMaker resources get, so it keeps to characters that need no encoding anywhere.
NAME_MAX_LENGTH = 100
NAME_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_MAX_LENGTH - 1}}}"
NAME_RULE = f"1 to {NAME_MAX_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(rf"^{NAME_PATTERN}\Z")  # \Z: `$` would accept a trailing newline
_KEY = re.compile(rf"^{re.escape(PREFIX)}(?:(?P<zip>[^/]+)(?i:{re.escape(ARCHIVE_SUFFIX)})|(?P<folder>[^/]+)/"
                  rf"{re.escape(READY_MARKER)})\Z")  # fmt: skip

SPLITS = ("train", "valid", "test")
MANIFEST_NAME = "manifest.json"


class InvalidDatasetName(ValueError):
    """A dataset name outside NAME_RULE; the message says what is allowed."""


def is_valid_name(name: str) -> bool:
    # fullmatch: with match, `$` also matches before a final newline, so "a\n" would pass.
    return bool(_NAME.fullmatch(name))


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidDatasetName(f"{name[:120]!r} is not a dataset name: use {NAME_RULE}")
    return name


def name_from_key(key: str) -> str | None:
    """`datasets/<name>.zip` or `datasets/<name>/_READY` -> the name as written (checked separately, so a
    bad name can be reported rather than ignored); any other key -> None."""
    match = _KEY.match(key)
    if not match:
        return None
    return match.group("zip") or match.group("folder")


def upload_kind(key: str) -> Literal["zip", "folder"] | None:
    """Whether `key` is a dataset archive (`.zip` in any case) or a folder upload's marker; None otherwise."""
    match = _KEY.match(key)
    if not match:
        return None
    return "zip" if match.group("zip") else "folder"


def archive_key(name: str) -> str:
    return f"{PREFIX}{name}{ARCHIVE_SUFFIX}"


def folder_prefix(name: str) -> str:
    return f"{PREFIX}{name}/"


def ready_key(name: str) -> str:
    return folder_prefix(name) + READY_MARKER


def staged_path(split: str, label: str, filename: str) -> str:
    """A staged image's path below the run's data prefix, and its name in the manifest: the channel
    `split` holds `<label>/<filename>`, so training sees the same relative path."""
    return f"{split}/{label}/{filename}"


def dataset_hash(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (staged path, sha256 of its bytes) pairs: staging computes it from the
    manifest, training from its channels, so a model names the exact dataset version it saw."""
    digest = hashlib.sha256()
    for path, content_sha256 in sorted(files):
        digest.update(f"{path}\t{content_sha256}\n".encode())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def channel_files(split: str, root: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(staged path, sha256) of every file a channel folder holds, as dataset_hash takes them."""
    base = Path(root)
    return [
        (f"{split}/{path.relative_to(base).as_posix()}", file_sha256(path))
        for path in sorted(base.rglob("*"))
        if path.is_file()
    ]
