"""`stepsage train-local`: run training_code/train.py here, under the SageMaker container contract."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CODE_DIR = REPO_ROOT / "training_code"
SPLITS = ("train", "valid", "test")
# No ImageNet weights can be downloaded here; everything else keeps train.py's own defaults.
LOCAL_DEFAULTS = {"weights": "none"}


class TrainLocalError(Exception):
    pass


def find_dataset_root(path: Path) -> Path:
    """The folder holding train/ and valid/: `path` itself or its single top-level folder."""
    if (path / "train").is_dir():
        return path
    children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and (children[0] / "train").is_dir():
        return children[0]
    raise TrainLocalError(f"{path} has no train/ folder (nor a single top-level folder holding one)")


def prepare_data(data: Path, job_dir: Path) -> Path:
    if not data.exists():
        raise TrainLocalError(f"--data {data} does not exist")
    if data.is_file():
        if not zipfile.is_zipfile(data):
            raise TrainLocalError(f"--data {data} is neither a folder nor a zip file")
        extracted = job_dir / "input" / "extracted"
        with zipfile.ZipFile(data) as archive:
            archive.extractall(extracted)
        return find_dataset_root(extracted)
    return find_dataset_root(data)


def container_environment(job_dir: Path, channels: dict[str, Path], cpus: int, hyperparameters: dict) -> dict:
    """The SM_* variables a SageMaker training container sets, pointing into `job_dir`."""
    env = dict(os.environ)
    env.update(
        {
            "SM_MODEL_DIR": str(job_dir / "model"),
            "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
            "SM_OUTPUT_DIR": str(job_dir / "output"),
            "SM_INPUT_DIR": str(job_dir / "input"),
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(hyperparameters),
            "SM_NUM_CPUS": str(cpus),
            "SM_NUM_GPUS": "0",
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "OMP_NUM_THREADS": str(cpus),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name, path in channels.items():
        env[f"SM_CHANNEL_{name.upper()}"] = str(path)
    return env


def split_passthrough(tokens: list[str]) -> dict[str, str]:
    """`--name value` / `--name=value` pairs for train.py; a flag with no value is an error."""
    result: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            raise TrainLocalError(f"expected a --hyperparameter, got {token!r}")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(tokens):
                raise TrainLocalError(f"hyperparameter {token} needs a value")
            key, value = token[2:], tokens[index + 1]
            index += 2
        result[key.replace("_", "-")] = value
    return result


class EpochPrinter:
    """Turns train.py's metric lines into a readable table as they arrive; other lines pass through."""

    def __init__(self, stream: TextIO = sys.stdout):
        self.stream = stream
        self.total_epochs: int | None = None

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if line.startswith("hyperparameters: "):
            try:
                self.total_epochs = int(json.loads(line.split(": ", 1)[1])["epochs"])
            except (ValueError, KeyError):
                pass
        fields = _fields(line)
        if line.startswith("epoch=") and "valid_accuracy" in fields:
            total = f"/{self.total_epochs}" if self.total_epochs else ""
            line = (
                f"epoch {int(fields['epoch']):>3}{total}  "
                f"train loss {fields['train_loss']:.4f} acc {fields['train_accuracy']:.4f}  |  "
                f"valid loss {fields['valid_loss']:.4f} acc {fields['valid_accuracy']:.4f}  |  "
                f"{fields.get('epoch_seconds', 0):5.1f} s, {fields.get('train_img_s', 0):5.0f} img/s"
            )
        print(line, file=self.stream, flush=True)


def _fields(line: str) -> dict[str, float]:
    found = {}
    for part in line.split():
        key, sep, value = part.partition("=")
        if sep:
            try:
                found[key] = float(value)
            except ValueError:
                continue
    return found


def train_local(
    data: Path,
    out: Path | None = None,
    hyperparameters: dict[str, str] | None = None,
    *,
    cpus: int | None = None,
    code_dir: Path = DEFAULT_CODE_DIR,
    python: str = sys.executable,
    stream: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Run one training job; returns its folders, exit code and (on success) evaluation accuracy."""
    job_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="stepsage-train-"))
    job_dir.mkdir(parents=True, exist_ok=True)
    # A reused --out is a new job: stale checkpoints there would silently resume the previous one.
    for stale in ("model", "output", "checkpoints", "input/extracted"):
        shutil.rmtree(job_dir / stale, ignore_errors=True)
    root = prepare_data(Path(data), job_dir)
    channels = {name: root / name for name in SPLITS if (root / name).is_dir()}
    hps = {**LOCAL_DEFAULTS, **(hyperparameters or {})}
    hps.setdefault("checkpoint-dir", str(job_dir / "checkpoints"))
    cpus = cpus or len(os.sched_getaffinity(0))
    env = container_environment(job_dir, channels, cpus, hps)
    for folder in ("model", "output/data"):
        (job_dir / folder).mkdir(parents=True, exist_ok=True)
    command = [python, str(code_dir / "train.py")]
    for key, value in hps.items():
        command += [f"--{key}", str(value)]
    print(f"job folder: {job_dir}", file=stream, flush=True)
    print(f"data: {root} (channels {', '.join(channels)})", file=stream, flush=True)
    printer = EpochPrinter(stream)
    started = time.perf_counter()
    with (
        open(job_dir / "train.log", "w") as log,
        subprocess.Popen(
            command,
            cwd=code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            printer.feed(line)
        returncode = process.wait()
    result: dict[str, Any] = {
        "job_dir": str(job_dir),
        "model_dir": str(job_dir / "model"),
        "output_dir": str(job_dir / "output" / "data"),
        "log": str(job_dir / "train.log"),
        "returncode": returncode,
        "seconds": time.perf_counter() - started,
    }
    evaluation_path = job_dir / "model" / "evaluation.json"
    if returncode == 0 and evaluation_path.is_file():
        result["accuracy"] = json.loads(evaluation_path.read_text())["accuracy"]
    return result


def _run(args: argparse.Namespace) -> int:
    try:
        hps = split_passthrough(args.hyperparameters)
        result = train_local(Path(args.data), Path(args.out) if args.out else None, hps, cpus=args.cpus)
    except TrainLocalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result["returncode"] != 0:
        print(f"training failed (exit {result['returncode']}); log: {result['log']}", file=sys.stderr)
        return int(result["returncode"])
    accuracy = result.get("accuracy", float("nan"))
    print(
        f"\nmodel artifact: {result['model_dir']}  (test accuracy {accuracy:.4f}, {result['seconds']:.0f} s)"
    )
    print(f"output data:    {result['output_dir']}\nlog:            {result['log']}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-local",
        help="train on this machine under the SageMaker container contract",
        description=__doc__,
        epilog="Any other --name value pair goes to train.py as a hyperparameter, e.g. --epochs 8 "
        "--hflip off (see python training_code/train.py --help). Local default: --weights none.",
    )
    parser.add_argument(
        "--data", required=True, help="ImageFolder root with train/ valid/ [test/], or a zip of one"
    )
    parser.add_argument("--out", default=None, help="job folder (default: a new temporary folder)")
    parser.add_argument(
        "--cpus", type=int, default=None, help="cores for the job (SM_NUM_CPUS; default: all)"
    )
    parser.set_defaults(func=_run, hyperparameters=[])
    # The shared CLI parses strictly; this subcommand alone keeps unknown --options for train.py.
    parser.__class__ = _PassThroughParser
    return parser


class _PassThroughParser(argparse.ArgumentParser):
    """Collects options it does not know into `hyperparameters` instead of rejecting them."""

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        parsed.hyperparameters = [*getattr(parsed, "hyperparameters", []), *unknown]
        return parsed, []
