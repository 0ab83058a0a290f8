"""The content-hashed sourcedir.tar.gz that `sagemaker_submit_directory` names, built deterministically."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path
from typing import Any

TRAINING_DIR = "training_code"
INFERENCE_DIR = "inference_code"
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


class CodeDirError(FileNotFoundError):
    """SAGEMAKER_CODE_DIR does not hold training_code/ (and inference_code/)."""


def _bundled_files(code_dir: Path) -> list[tuple[str, Path]]:
    """(name in the archive, file) pairs: training code at the root, inference code under inference_code/."""
    training, inference = code_dir / TRAINING_DIR, code_dir / INFERENCE_DIR
    for required in (training, inference):
        if not required.is_dir():
            raise CodeDirError(
                f"{required} is missing; SAGEMAKER_CODE_DIR must hold {TRAINING_DIR}/ and {INFERENCE_DIR}/"
            )
    pairs: list[tuple[str, Path]] = []
    for root, prefix in ((training, ""), (inference, INFERENCE_DIR + "/")):
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            if not path.is_file() or path.suffix in _SKIPPED_SUFFIXES or _SKIPPED_PARTS & set(relative.parts):
                continue
            pairs.append((prefix + relative.as_posix(), path))
    return sorted(pairs)


def build_sourcedir(code_dir: Path) -> bytes:
    """A tar.gz whose bytes depend only on the files' names and contents (fixed order, times and owners)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in _bundled_files(code_dir):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    # gzip stores a timestamp and file name in its header; both are pinned so equal code hashes equally.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(tar_bytes.getvalue())
    return compressed.getvalue()


def bundle_key(tarball: bytes) -> str:
    return f"code/sourcedir-{hashlib.sha256(tarball).hexdigest()[:16]}.tar.gz"


def _metrics_module(code_dir: Path) -> Any:
    path = code_dir / TRAINING_DIR / "metrics.py"
    spec = importlib.util.spec_from_file_location("_bundled_training_metrics", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise CodeDirError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metric_definitions(code_dir: Path) -> list[dict[str, str]]:
    """METRIC_DEFINITIONS from the bundled training_code/metrics.py: the one source of the regexes."""
    return [dict(d) for d in _metrics_module(code_dir).METRIC_DEFINITIONS]


def tuning_objective(code_dir: Path) -> dict[str, str]:
    module = _metrics_module(code_dir)
    return {"Type": module.OBJECTIVE_TYPE, "MetricName": module.OBJECTIVE_METRIC}
