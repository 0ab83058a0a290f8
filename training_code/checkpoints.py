"""Atomic per-epoch checkpoints, the best weights so far, and RNG state, so a restarted job resumes."""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-epoch(\d+)\.pt$")
BEST_FILE = "best-model.pt"


class CheckpointError(Exception):
    pass


def _atomic_save(obj: Any, path: Path) -> None:
    # A spot interruption can land mid-write: write beside the target, fsync, then rename over it.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def checkpoint_path(directory: str | os.PathLike, epoch: int) -> Path:
    return Path(directory) / f"checkpoint-epoch{epoch:04d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) pairs, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(directory: str | os.PathLike, epoch: int, state: dict, keep: int = 1) -> Path:
    """Write the epoch's checkpoint atomically, then drop older ones (keeps the S3 sync small)."""
    path = checkpoint_path(directory, epoch)
    _atomic_save({**state, "epoch": epoch}, path)
    for old_epoch, old_path in list_checkpoints(directory)[:-keep]:
        if old_epoch != epoch:
            old_path.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


def latest_checkpoint(directory: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest readable checkpoint; an unreadable newest one (a torn S3 download) falls back to older."""
    for _, path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            print(f"checkpoint: skipping {e}", flush=True)
    return None


def save_best(directory: str | os.PathLike, model_state: dict, epoch: int, metrics: dict) -> Path:
    path = Path(directory) / BEST_FILE
    _atomic_save({"model": model_state, "epoch": epoch, "metrics": metrics}, path)
    return path


def load_best(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / BEST_FILE
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path)
    except CheckpointError as e:
        print(f"checkpoint: ignoring best weights: {e}", flush=True)
        return None


def capture_rng_state() -> dict:
    """RNG state as tensors and plain values, so checkpoints load with weights_only=True."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(int(x) for x in python["internal"].tolist()), python["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
