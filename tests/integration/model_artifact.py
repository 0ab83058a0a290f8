"""Builds a real, tiny model artifact folder (as training writes it) for inference and serving tests."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE = REPO_ROOT / "training_code"
INFERENCE_CODE = REPO_ROOT / "inference_code"
CONTRACTS = REPO_ROOT / "contracts"
# What the training job copies into code/ beside inference.py (contracts.artifact names them).
CODE_FILES = (
    INFERENCE_CODE / "inference.py",
    INFERENCE_CODE / "requirements.txt",
    TRAINING_CODE / "presets.py",
    TRAINING_CODE / "architectures.py",
)
DEFAULT_LABELS = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")


def build_model_artifact(
    dest: Path,
    *,
    architecture: str = "resnet18",
    labels: tuple[str, ...] = DEFAULT_LABELS,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write model.pth, model_config.json, labels.json, evaluation.json and code/ into `dest`.

    The weights are random but seeded, so the same call always yields the same predictions."""
    if str(TRAINING_CODE) not in sys.path:
        sys.path.insert(0, str(TRAINING_CODE))
    import torch

    import architectures
    import presets

    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = architectures.build_model(architecture, len(labels), "none")
    torch.save(model.state_dict(), dest / "model.pth")
    config = {
        "architecture": architecture,
        "num_classes": len(labels),
        "image_size": image_size,
        "mean": list(presets.IMAGENET_MEAN),
        "std": list(presets.IMAGENET_STD),
        "precision": "fp32",
    }
    (dest / "model_config.json").write_text(json.dumps(config))
    (dest / "labels.json").write_text(json.dumps(list(labels)))
    evaluation = {
        "accuracy": 1 / len(labels),
        "labels": list(labels),
        "per_class": {label: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for label in labels},
        "confusion_matrix": [[0] * len(labels) for _ in labels],
    }
    (dest / "evaluation.json").write_text(json.dumps(evaluation))
    code = dest / "code"
    code.mkdir(exist_ok=True)
    for source in CODE_FILES:
        shutil.copy2(source, code / source.name)
    shutil.copytree(CONTRACTS, code / "contracts", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (40, 30), seed: int = 1) -> bytes:
    """A small, deterministic, non-uniform picture encoded as `fmt` (JPEG, PNG, GIF, BMP, WEBP)."""
    from PIL import Image

    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 7 + seed * 31) % 256, (y * 5 + seed * 17) % 256, (x * y + seed) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width`x`height`: a decompression bomb's signature. Its IDAT holds
    only a few rows, so nothing that checks the header first ever inflates it."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
