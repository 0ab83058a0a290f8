"""The local pipeline's failure paths: bad data, a killed training job, duplicate events, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from pipeline_data import TINY_PARAMETERS

from stepsage.local.cloud import CloudSettings, LocalCloud

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _cloud(tmp_path: Path, **parameters: str) -> LocalCloud:
    settings = CloudSettings(
        port=0,
        stack_name=f"faults-{uuid.uuid4().hex[:6]}",
        work_dir=tmp_path,
        parameters={**TINY_PARAMETERS, **parameters},
    )
    cloud = LocalCloud(settings)
    cloud.build()
    return cloud.start()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    running = _cloud(tmp_path)
    yield running
    running.stop()


def _executions(cloud: LocalCloud) -> list[dict[str, Any]]:
    listed = cloud.stepfunctions.handle("ListExecutions", {"stateMachineArn": cloud.state_machine_arn})
    return list(listed["executions"])


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _subscribe_queue(cloud: LocalCloud) -> tuple[Any, str]:
    sqs, sns = cloud.client("sqs"), cloud.client("sns")
    queue_url = sqs.create_queue(QueueName=f"notices-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    topic_arn = next(iter(cloud.stack.topics.values()))
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return sqs, queue_url


def test_bad_dataset_fails_notifies_deploys_nothing_and_keeps_the_upload(
    cloud: LocalCloud, broken_dataset_zip: Path
) -> None:
    sqs, queue_url = _subscribe_queue(cloud)
    s3 = cloud.client("s3")
    upload = broken_dataset_zip.read_bytes()
    put = s3.put_object(Bucket=cloud.data_bucket, Key="datasets/broken.zip", Body=upload)

    # S3 delivers events at least once: hand the dispatcher the very same event a second time.
    delivered = _wait(lambda: list(cloud.dispatcher.delivered), 30, "the S3 event")  # type: ignore[union-attr]
    cloud.dispatcher.put(delivered[0][1])  # type: ignore[union-attr]
    first = _wait(lambda: _executions(cloud), 30, "an execution")[0]
    execution = cloud.stepfunctions.wait(first["executionArn"], timeout=120)
    time.sleep(2)  # the duplicate's start Lambda has run by now; it must not have started a second run
    assert len(_executions(cloud)) == 1

    assert execution["status"] == "FAILED"
    assert execution["error"] == "DatasetValidationError"
    assert "002.cat" in execution["cause"]

    messages = _wait(
        lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages"), 30, "the notice"
    )
    notice = json.loads(messages[0]["Body"])["Message"]
    assert "DatasetValidationError" in notice

    assert cloud.sagemaker.handle("ListEndpoints", {})["Endpoints"] == []
    versions = s3.list_object_versions(Bucket=cloud.data_bucket, Prefix="datasets/broken.zip")["Versions"]
    assert [v["VersionId"] for v in versions] == [put["VersionId"]]
    assert s3.head_object(Bucket=cloud.data_bucket, Key="datasets/broken.zip")["ETag"] == put["ETag"]
    staged = s3.list_objects_v2(Bucket=cloud.artifacts_bucket, Prefix="staged/")
    assert staged.get("KeyCount", 0) == 0


def _training_processes(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in root.children(recursive=True):
        try:
            if any(part.endswith("train.py") for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_killed_training_job_fails_with_a_reason_and_the_pipeline_takes_its_catch(
    tmp_path: Path, tiny_dataset: tuple[Path, Path]
) -> None:
    cloud = _cloud(tmp_path, MaxTrainingJobs="1", MaxParallelTrainingJobs="1")
    try:
        training = threading.Event()
        cloud.add_listener(
            lambda source, event: (
                training.set()
                if source == "sagemaker" and event.get("secondary_status") == "Training"
                else None
            )
        )
        cloud.client("s3").upload_file(str(tiny_dataset[1]), cloud.data_bucket, "datasets/killed.zip")
        assert training.wait(120), "no training job started"
        victims = _wait(lambda: _training_processes(psutil.Process()), 30, "the training process")
        victims[0].send_signal(signal.SIGKILL)

        execution = cloud.stepfunctions.wait(_executions(cloud)[0]["executionArn"], timeout=120)
        assert execution["status"] == "FAILED"
        # The tuning job's .sync task failed (States.TaskFailed); the run reports it under its own name.
        assert execution["error"] == "PipelineStepFailed"
        assert "Failed" in execution["cause"]
        jobs = cloud.sagemaker.handle("ListTrainingJobs", {})["TrainingJobSummaries"]
        assert [j["TrainingJobStatus"] for j in jobs] == ["Failed"]
        job = cloud.sagemaker.handle("DescribeTrainingJob", {"TrainingJobName": jobs[0]["TrainingJobName"]})
        assert "signal 9" in job["FailureReason"]
        history = cloud.stepfunctions.handle(
            "GetExecutionHistory", {"executionArn": execution["executionArn"], "maxResults": 1000}
        )["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
        assert "NotifyFailure" in entered and "Deploy" not in entered
    finally:
        cloud.stop()


def test_ctrl_c_leaves_no_process_behind(tmp_path: Path, tiny_dataset: tuple[Path, Path]) -> None:
    command = [sys.executable, "-m", "stepsage.cli", "local", "up", "--json", "--port", "0", "--quiet"]
    for name, value in TINY_PARAMETERS.items():
        command += ["--parameter", f"{name}={value}"]
    env = dict(os.environ, STEPSAGE_LOCAL_STATE=str(tmp_path))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        factory: Any = boto3.client
        s3 = factory(
            "s3",
            endpoint_url=info["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        s3.upload_file(str(tiny_dataset[1]), info["data_bucket"], "datasets/interrupted.zip")
        parent = psutil.Process(process.pid)
        _wait(lambda: _training_processes(parent), 120, "a training process")
        descendants = parent.children(recursive=True)
        assert len(descendants) >= 2  # Lambda workers and training jobs, at least

        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=90) == 0
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # its thread stacks go to stderr, into this test's report
            time.sleep(2)
            raise
    finally:
        if process.poll() is None:
            process.kill()

    def orphans() -> list[int]:
        alive = []
        for child in descendants:
            try:
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        return alive

    time.sleep(1)
    assert orphans() == []
