"""`stepsage train-local`: run training_code/train.py here, as the local SageMaker emulator's training job."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, TextIO

from stepsage import arguments
from stepsage.local.errors import SageMakerError
from stepsage.local.sagemaker.context import EmulatorContext
from stepsage.local.sagemaker.storage import FolderStorage
from stepsage.local.sagemaker.training import TrainingJob
from stepsage.local.sagemaker.validation import validate_request
from stepsage.local.template import ACCOUNT_ID, REGION
from stepsage.user_errors import OneLineArgumentParser, UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CODE_DIR = REPO_ROOT / "training_code"
# The launch Lambda's bundler: the sourcedir.tar.gz layout and the MetricDefinitions have one owner.
CODE_BUNDLE = REPO_ROOT / "lambdas" / "launch_hpo" / "code_bundle.py"
SPLITS = ("train", "valid", "test")
# No ImageNet weights can be downloaded here; everything else keeps train.py's own defaults.
LOCAL_DEFAULTS = {"weights": "none"}
# The job's "S3": the dataset folder is one bucket, <job>/artifacts the other (code, model.tar.gz).
DATA_BUCKET = "dataset"
ARTIFACTS_BUCKET = "artifacts"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/stepsage-train-local"
LOCAL_IMAGE = "stepsage-train-local:this-interpreter"


class TrainLocalError(UserError):
    """A train-local input the job cannot run with (data, hyperparameters, the request)."""


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


def _code_bundle() -> Any:
    spec = importlib.util.spec_from_file_location("_stepsage_code_bundle", CODE_BUNDLE)
    if spec is None or spec.loader is None:
        raise TrainLocalError(f"cannot load {CODE_BUNDLE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_request(
    name: str,
    channels: list[str],
    hyperparameters: dict[str, str],
    code_uri: str,
    metrics: list[dict[str, str]],
) -> dict[str, Any]:
    """The CreateTrainingJob request that the launch Lambda would make, over the local buckets."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": LOCAL_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": metrics,
        },
        "RoleArn": ROLE_ARN,
        "HyperParameters": {
            **hyperparameters,
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": code_uri,
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{DATA_BUCKET}/{channel}/"}
                },
            }
            for channel in channels
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{ARTIFACTS_BUCKET}"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 5 * 86400},
    }


def training_job(
    job_dir: Path,
    root: Path,
    hyperparameters: dict[str, str],
    *,
    cpus: int,
    code_dir: Path = DEFAULT_CODE_DIR,
    python: str = sys.executable,
    on_log: Any = None,
) -> TrainingJob:
    """The emulator's training job over `root` (the dataset folder), running in `job_dir`."""
    artifacts = job_dir / "artifacts"
    bundle = _code_bundle()
    # build_sourcedir wants the folder holding training_code/ and inference_code/, as the code layer has.
    tarball = bundle.build_sourcedir(code_dir.parent)
    code_key = bundle.bundle_key(tarball)
    (artifacts / code_key).parent.mkdir(parents=True, exist_ok=True)
    (artifacts / code_key).write_bytes(tarball)
    channels = [name for name in SPLITS if (root / name).is_dir()]
    request = job_request(
        f"train-local-{time.strftime('%Y%m%d-%H%M%S')}",
        channels,
        hyperparameters,
        f"s3://{ARTIFACTS_BUCKET}/{code_key}",
        bundle.metric_definitions(code_dir.parent),
    )
    try:
        validate_request("CreateTrainingJob", request)
    except SageMakerError as e:
        raise TrainLocalError(e.message) from e
    context = EmulatorContext(
        storage=FolderStorage({DATA_BUCKET: root, ARTIFACTS_BUCKET: artifacts}),
        work_dir=job_dir,
        region=REGION,
        account_id=ACCOUNT_ID,
        cores=cpus,
        python=python,
    )
    return TrainingJob(context, request, job_dir=job_dir, on_log=on_log)


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
    # The job clears its own folders (stale checkpoints would resume the previous job); these two are ours.
    for stale in ("artifacts", "input/extracted"):
        shutil.rmtree(job_dir / stale, ignore_errors=True)
    root = prepare_data(Path(data), job_dir)
    hps = {**LOCAL_DEFAULTS, **(hyperparameters or {})}
    printer = EpochPrinter(stream)
    job = training_job(
        job_dir,
        root,
        hps,
        cpus=cpus or len(os.sched_getaffinity(0)),
        code_dir=code_dir,
        python=python,
        on_log=lambda _job, line: printer.feed(line),
    )
    channels = [c["ChannelName"] for c in job.request["InputDataConfig"]]
    print(f"job folder: {job_dir}", file=stream, flush=True)
    print(f"data: {root} (channels {', '.join(channels)})", file=stream, flush=True)
    started = time.perf_counter()
    job.start()
    try:
        while not job.wait(0.5):
            pass
    except KeyboardInterrupt:
        job.stop()
        job.wait(job.context.stop_grace_seconds + 5)
        job.context.processes.kill_all(grace_seconds=0)
        raise
    returncode = job.exit_code if job.exit_code is not None else int(job.status != "Completed")
    if job.status != "Completed" and returncode == 0:
        returncode = 1  # the script succeeded, the job did not (its artifacts could not be written)
    result: dict[str, Any] = {
        "job_dir": str(job_dir),
        "job_name": job.name,
        "status": job.status,
        "failure_reason": job.failure_reason,
        "model_dir": str(job_dir / "model"),
        "output_dir": str(job_dir / "output" / "data"),
        "log": str(job.log_path),
        "returncode": returncode,
        "seconds": time.perf_counter() - started,
    }
    storage = job.context.storage
    if job.model_artifacts and isinstance(storage, FolderStorage):
        result["model_tarball"] = str(storage.path(job.model_artifacts))
    evaluation_path = job_dir / "model" / "evaluation.json"
    if returncode == 0 and evaluation_path.is_file():
        result["accuracy"] = json.loads(evaluation_path.read_text())["accuracy"]
    return result


def _run(args: argparse.Namespace) -> int:
    try:
        hps = split_passthrough(args.hyperparameters)
        result = train_local(Path(args.data), Path(args.out) if args.out else None, hps, cpus=args.cpus)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    if result["returncode"] != 0:
        reason = f": {result['failure_reason']}" if result.get("failure_reason") else ""
        print(f"training failed (exit {result['returncode']}){reason}; log: {result['log']}", file=sys.stderr)
        return int(result["returncode"])
    accuracy = result.get("accuracy", float("nan"))
    print(
        f"\nmodel artifact: {result['model_dir']}  (test accuracy {accuracy:.4f}, {result['seconds']:.0f} s)"
    )
    if result.get("model_tarball"):
        print(f"model.tar.gz:   {result['model_tarball']}")
    print(f"output data:    {result['output_dir']}\nlog:            {result['log']}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-local",
        help="train on this machine: the local SageMaker emulator's training job, without the cloud",
        description=__doc__,
        epilog="Any other --name value pair goes to train.py as a hyperparameter, e.g. --epochs 8 "
        "--hflip off (see python training_code/train.py --help). Local default: --weights none.",
    )
    parser.add_argument(
        "--data", required=True, help="ImageFolder root with train/ valid/ [test/], or a zip of one"
    )
    parser.add_argument("--out", default=None, help="job folder (default: a new temporary folder)")
    parser.add_argument(
        "--cpus",
        type=arguments.positive_int,
        default=None,
        help="cores for the job (SM_NUM_CPUS; default: all)",
    )
    parser.set_defaults(func=_run, hyperparameters=[])
    # The shared CLI parses strictly; this subcommand alone keeps unknown --options for train.py.
    parser.__class__ = _PassThroughParser
    return parser


class _PassThroughParser(OneLineArgumentParser):
    """Collects options it does not know into `hyperparameters` instead of rejecting them."""

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        parsed.hyperparameters = [*getattr(parsed, "hyperparameters", []), *unknown]
        return parsed, []
