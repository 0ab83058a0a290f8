"""Training jobs in the local SageMaker emulator: the container contract, artifacts, failures and stops."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from typing import Any

import conftest_sagemaker
import pytest
from conftest_sagemaker import (
    BUCKET,
    s3_client,
    training_request,
    upload_fake_job_inputs,
    wait_for,
    wait_training,
)

from stepsage.local.errors import SageMakerError

pytestmark = pytest.mark.integration

# Fixtures shared through the helper module.
s3_endpoint = conftest_sagemaker.s3_endpoint
backend = conftest_sagemaker.backend


def _tar_members(endpoint: str, uri: str) -> dict[str, bytes]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    body = s3_client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_job_runs_under_the_container_contract_and_uploads_artifacts(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "contract")
    request = training_request("contract-job", uris, epochs="3", quality="0.9")
    request["CheckpointConfig"] = {"S3Uri": uris["checkpoints"]}
    request["Tags"] = [{"Key": "stack", "Value": "test"}]
    events: list[dict[str, Any]] = []
    backend.add_listener(events.append)

    arn = backend.handle("CreateTrainingJob", request)["TrainingJobArn"]
    described = wait_training(backend, "contract-job")

    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:training-job/contract-job"
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    finals = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert finals == {"valid:accuracy": pytest.approx(0.9), "train:loss": pytest.approx(0.1)}
    model = _tar_members(s3_endpoint, described["ModelArtifacts"]["S3ModelArtifacts"])
    assert (
        described["ModelArtifacts"]["S3ModelArtifacts"]
        == f"{uris['output']}/contract-job/output/model.tar.gz"
    )
    contract = json.loads(model["contract.json"])
    # sagemaker_* keys are the platform's: stripped from the script's arguments.
    assert contract["argv"][:4] == ["--epochs", "3", "--quality", "0.9"]
    assert not any(a.startswith("--sagemaker") for a in contract["argv"])
    assert contract["env"]["SM_NUM_CPUS"] == "2" and contract["env"]["OMP_NUM_THREADS"] == "2"
    assert json.loads(contract["env"]["SM_HPS"]) == {"epochs": "3", "quality": "0.9"}
    assert json.loads(contract["env"]["SM_CHANNELS"]) == ["train"]
    assert contract["env"]["SM_CHANNEL_TRAIN"].endswith("input/data/train")
    # Each local job gets its own checkpoint dir instead of the container's shared /opt/ml/checkpoints.
    assert contract["checkpoint_dir"].endswith("training-jobs/contract-job/checkpoints")
    output = _tar_members(s3_endpoint, f"{uris['output']}/contract-job/output/output.tar.gz")
    assert json.loads(output["metrics.json"]) == {"epochs": 3}
    checkpoint = s3_client(s3_endpoint).get_object(Bucket=BUCKET, Key="contract/checkpoints/last.txt")
    assert checkpoint["Body"].read() == b"3"
    logs = backend.logs("contract-job")
    assert "files in train: ['a.txt', 'sub']" in logs
    assert [e["epoch"] for e in events if e["event"] == "Epoch"] == [1, 2, 3]
    assert backend.handle("ListTags", {"ResourceArn": arn})["Tags"] == [{"Key": "stack", "Value": "test"}]
    listed = backend.handle("ListTrainingJobs", {"StatusEquals": "Completed"})["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in listed] == ["contract-job"]


def test_script_error_fails_the_job_with_its_last_error_line(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "failing")
    backend.handle("CreateTrainingJob", training_request("failing-job", uris, fail="dataset is empty"))
    described = wait_training(backend, "failing-job")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"] == "AlgorithmError: RuntimeError: dataset is empty, exit code: 1"
    assert "ModelArtifacts" not in described


def test_killed_subprocess_fails_the_job_with_a_reason(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "killed")
    backend.handle("CreateTrainingJob", training_request("killed-job", uris, epochs="200", sleep="0.1"))
    job = backend.training_jobs["killed-job"]
    wait_for(lambda: any(line.startswith("epoch=") for line in job.logs()), timeout=30)
    [process] = list(backend.context.processes._children)
    os.kill(process.pid, signal.SIGKILL)
    described = wait_training(backend, "killed-job")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].endswith("killed by signal 9 (SIGKILL)")


def test_stop_and_max_runtime_end_the_process(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "stopping")
    backend.handle("CreateTrainingJob", training_request("stopped-job", uris, epochs="500", sleep="0.1"))
    job = backend.training_jobs["stopped-job"]
    wait_for(lambda: any(line.startswith("epoch=") for line in job.logs()), timeout=30)
    backend.handle("StopTrainingJob", {"TrainingJobName": "stopped-job"})
    described = wait_training(backend, "stopped-job")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("Stopped", "Stopped")

    request = training_request("timed-out-job", uris, epochs="500", sleep="0.1")
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 2}
    started = time.monotonic()
    backend.handle("CreateTrainingJob", request)
    described = wait_training(backend, "timed-out-job")
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    ), described.get("FailureReason")
    assert time.monotonic() - started < 15
    assert not backend.context.processes._children


def test_errors_carry_aws_codes(backend: Any, s3_endpoint: str) -> None:
    with pytest.raises(SageMakerError) as missing:
        backend.handle("DescribeTrainingJob", {"TrainingJobName": "nope"})
    assert (missing.value.code, missing.value.message) == (
        "ValidationException",
        "Requested resource not found.",
    )
    uris = upload_fake_job_inputs(s3_endpoint, "dupes")
    backend.handle("CreateTrainingJob", training_request("dupe-job", uris))
    with pytest.raises(SageMakerError) as duplicate:
        backend.handle("CreateTrainingJob", training_request("dupe-job", uris))
    assert duplicate.value.code == "ResourceInUse"
    with pytest.raises(SageMakerError) as invalid:
        backend.handle("CreateTrainingJob", training_request("x" * 64, uris))
    assert invalid.value.code == "ValidationException"
    request = training_request("no-data-job", uris)
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/missing/prefix"
    backend.handle("CreateTrainingJob", request)
    described = wait_training(backend, "no-data-job")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: No S3 objects found")


def test_shutdown_leaves_no_orphan_processes(s3_endpoint: str, tmp_path: Any) -> None:
    from stepsage.local.sagemaker.backend import SageMakerBackend

    emulator = SageMakerBackend(s3_endpoint_url=s3_endpoint, work_dir=tmp_path / "sm", cores=2)
    uris = upload_fake_job_inputs(s3_endpoint, "orphans")
    emulator.handle("CreateTrainingJob", training_request("orphan-job", uris, epochs="500", sleep="0.1"))
    job = emulator.training_jobs["orphan-job"]
    wait_for(lambda: any(line.startswith("epoch=") for line in job.logs()), timeout=30)
    [process] = list(emulator.context.processes._children)
    emulator.shutdown()
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
    assert (
        emulator.handle("DescribeTrainingJob", {"TrainingJobName": "orphan-job"})["TrainingJobStatus"]
        == "Stopped"
    )
