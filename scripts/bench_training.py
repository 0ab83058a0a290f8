"""Benchmark train.py against the plain way (ImageFolder, Adam, fp32, no tricks) in the same run.

    .venv/bin/python scripts/bench_training.py [--data data/digits] [--epochs 6] [--threads 2]

Both train resnet18 from scratch on the same data with the same thread count. Prints training and
evaluation throughput, test accuracy and wall time for each, and our/baseline ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def baseline(data: Path, epochs: int, threads: int, image_size: int) -> dict[str, float]:
    """The seed recipe: ImageFolder, resize + normalize, Adam at 1e-3, fp32, NCHW, batch 32."""
    import torch
    from torch import nn
    from torchvision import datasets, models, transforms

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    transform = transforms.Compose(
        [
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    train_set = datasets.ImageFolder(str(data / "train"), transform)
    test_set = datasets.ImageFolder(str(data / "test"), transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=128)
    model = models.resnet18(num_classes=len(train_set.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    train_seconds = 0.0
    for _ in range(epochs):
        model.train()
        epoch_start = time.perf_counter()
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
        train_seconds += time.perf_counter() - epoch_start
    model.eval()
    right = 0
    eval_start = time.perf_counter()
    with torch.no_grad():
        for images, labels in test_loader:
            right += int((model(images).argmax(1) == labels).sum())
    eval_seconds = time.perf_counter() - eval_start
    return {
        "train_img_s": epochs * len(train_set) / train_seconds,
        "eval_img_s": len(test_set) / eval_seconds,
        "test_accuracy": right / len(test_set),
        "wall_s": time.perf_counter() - started,
    }


def ours(data: Path, epochs: int, threads: int, image_size: int) -> dict[str, float]:
    """training_code/train.py under the container contract, with its own defaults for from-scratch runs."""
    with tempfile.TemporaryDirectory() as work:
        model_dir, output_dir = Path(work) / "model", Path(work) / "output"
        env = dict(
            os.environ,
            SM_CHANNEL_TRAIN=str(data / "train"),
            SM_CHANNEL_VALID=str(data / "valid"),
            SM_CHANNEL_TEST=str(data / "test"),
            SM_MODEL_DIR=str(model_dir),
            SM_OUTPUT_DATA_DIR=str(output_dir),
            SM_NUM_CPUS=str(threads),
        )
        command = [sys.executable, str(ROOT / "training_code" / "train.py"), "--weights", "none"]
        command += ["--epochs", str(epochs), "--image-size", str(image_size)]
        command += ["--hflip", "off", "--patience", "0"]
        command += ["--checkpoint-dir", str(Path(work) / "checkpoints")]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        metrics = json.loads((output_dir / "metrics.json").read_text())
    return {
        "train_img_s": metrics["throughput"]["train_img_s"],
        "eval_img_s": metrics["throughput"]["valid_img_s"],
        "test_accuracy": metrics["test_accuracy"],
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/digits"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"no dataset at {args.data}: run `stepsage sample --out {args.data}` first", file=sys.stderr)
        return 2
    base = baseline(args.data, args.epochs, args.threads, args.image_size)
    mine = ours(args.data, args.epochs, args.threads, args.image_size)
    print(f"{'':18}{'baseline':>12}{'train.py':>12}{'ratio':>9}")
    for key, label in (
        ("train_img_s", "train img/s"),
        ("eval_img_s", "eval img/s"),
        ("test_accuracy", "test accuracy"),
        ("wall_s", "wall seconds"),
    ):
        print(f"{label:18}{base[key]:12.3f}{mine[key]:12.3f}{mine[key] / base[key]:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
