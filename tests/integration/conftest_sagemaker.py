"""Shared pieces for the SageMaker emulator tests: a moto S3 server, a fake training program, requests."""

from __future__ import annotations

import io
import socket
import tarfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

ROLE_ARN = "arn:aws:iam::123456789012:role/stepsage-sagemaker"
BUCKET = "stepsage-test"
OBJECTIVE = "valid:accuracy"
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"\btrain_loss=([-+0-9.eE]+)"},
    {"Name": "valid:accuracy", "Regex": r"\bvalid_accuracy=([-+0-9.eE]+)"},
]

# A real script honouring the container contract: CLI hyperparameters, SM_* paths, one metric line per epoch.
FAKE_TRAIN = textwrap.dedent(
    """
    import argparse, json, os, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quality", type=float, default=0.5)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--fail", default="")
    parser.add_argument("--checkpoint-dir", default="/opt/ml/checkpoints")
    args, unknown = parser.parse_known_args()
    model_dir, output_dir = os.environ["SM_MODEL_DIR"], os.environ["SM_OUTPUT_DATA_DIR"]
    train = os.environ["SM_CHANNEL_TRAIN"]
    print("files in train:", sorted(os.listdir(train)), flush=True)
    if args.fail:
        raise RuntimeError(args.fail)
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.sleep)
        accuracy = args.quality * epoch / args.epochs
        print(f"epoch={epoch} train_loss={1 - accuracy:.4f} valid_accuracy={accuracy:.4f}", flush=True)
        with open(os.path.join(args.checkpoint_dir, "last.txt"), "w") as f:
            f.write(str(epoch))
    keys = ["SM_NUM_CPUS", "OMP_NUM_THREADS", "SM_HPS", "SM_CHANNELS", "SM_CHANNEL_TRAIN"]
    with open(os.path.join(model_dir, "contract.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys},
                   "checkpoint_dir": args.checkpoint_dir}, f)
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump({"epochs": args.epochs}, f)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    # moto's ThreadedMotoServer.stop() waits for its serve loop without a bound; once, in a full run, it
    # never returned. A stuck stop of the test's S3 must not hang the suite, so it gets a deadline.
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=15)


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def tarball(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_fake_job_inputs(endpoint: str, prefix: str, program: str = FAKE_TRAIN) -> dict[str, str]:
    """The training channel and sourcedir.tar.gz; returns the URIs a request needs."""
    s3 = s3_client(endpoint)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/data/train/a.txt", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/data/train/sub/b.txt", Body=b"b")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/code/sourcedir.tar.gz", Body=tarball({"train.py": program}))
    return {
        "train": f"s3://{BUCKET}/{prefix}/data/train",
        "code": f"s3://{BUCKET}/{prefix}/code/sourcedir.tar.gz",
        "output": f"s3://{BUCKET}/{prefix}/output",
        "checkpoints": f"s3://{BUCKET}/{prefix}/checkpoints",
    }


def training_request(name: str, uris: dict[str, str], **hyperparameters: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": ROLE_ARN,
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": uris["code"],
            **hyperparameters,
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uris["train"]}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": uris["output"]},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


def tuning_request(
    name: str,
    uris: dict[str, str],
    *,
    strategy: str,
    ranges: dict[str, Any],
    max_jobs: int | None,
    parallel: int,
    static: dict[str, str] | None = None,
    **config: Any,
) -> dict[str, Any]:
    job = training_request("unused", uris)
    limits: dict[str, Any] = {"MaxParallelTrainingJobs": parallel}
    if max_jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = max_jobs
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
            "ResourceLimits": limits,
            "ParameterRanges": ranges,
            **config,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {**job["HyperParameters"], **(static or {})},
            "AlgorithmSpecification": job["AlgorithmSpecification"],
            "RoleArn": ROLE_ARN,
            "InputDataConfig": job["InputDataConfig"],
            "OutputDataConfig": job["OutputDataConfig"],
            "ResourceConfig": job["ResourceConfig"],
            "StoppingCondition": job["StoppingCondition"],
        },
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_training(backend: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described = backend.handle("DescribeTrainingJob", {"TrainingJobName": name})
        return described if described["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") else None

    return wait_for(done, timeout)


def wait_tuning(backend: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described = backend.handle("DescribeHyperParameterTuningJob", {"HyperParameterTuningJobName": name})
        status = described["HyperParameterTuningJobStatus"]
        return described if status in ("Completed", "Failed", "Stopped") else None

    return wait_for(done, timeout, interval=0.2)


@pytest.fixture
def backend(s3_endpoint: str, tmp_path: Path) -> Iterator[Any]:
    from stepsage.local.sagemaker.backend import SageMakerBackend

    emulator = SageMakerBackend(s3_endpoint_url=s3_endpoint, work_dir=tmp_path / "sagemaker", cores=2)
    emulator.context.stop_grace_seconds = 2.0
    yield emulator
    emulator.shutdown()
