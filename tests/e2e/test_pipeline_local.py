"""The whole pipeline on tiny data: upload to the URL's answer, with boto3 against `stepsage local up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pipeline_data import TINY_CLASSES, TINY_PARAMETERS

from stepsage.report.builder import SECTIONS, build_report

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`stepsage local up --json` in a subprocess, as a user would start it; stopped with Ctrl-C."""
    state = tmp_path_factory.mktemp("local-cloud")
    command = [sys.executable, "-m", "stepsage.cli", "local", "up", "--json", "--port", "0"]
    # Tests gate nothing on rules: tiny data trained for two epochs is meant to be quick, not good.
    for name, value in {**TINY_PARAMETERS, "DeployGate": "always"}.items():
        command += ["--parameter", f"{name}={value}"]
    env = dict(os.environ, STEPSAGE_LOCAL_STATE=str(state))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, "local up exited before printing its settings"
        info = json.loads(line)
        yield info
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def _client(service: str, info: dict[str, Any]) -> Any:
    factory: Any = boto3.client
    return factory(
        service,
        endpoint_url=info["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _wait_for_execution(sfn: Any, arn: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = sfn.list_executions(stateMachineArn=arn)["executions"]
        if listed and listed[0]["status"] != "RUNNING":
            return sfn.describe_execution(executionArn=listed[0]["executionArn"])
        time.sleep(1)
    raise AssertionError(f"no finished execution after {timeout} s")


def test_upload_to_answer(local_up: dict[str, Any], tiny_dataset: tuple[Path, Path], tmp_path: Path) -> None:
    info = local_up
    assert set(info) >= {"endpoint_url", "data_bucket", "state_machine_arn", "function_url"}
    folder, archive = tiny_dataset
    s3, sfn, sagemaker = (_client(s, info) for s in ("s3", "stepfunctions", "sagemaker"))

    s3.upload_file(str(archive), info["data_bucket"], "datasets/tiny.zip")
    execution = _wait_for_execution(sfn, info["state_machine_arn"], timeout=270)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")

    history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    for state in ("StageData", "LaunchHPO", "RunHPO", "SelectBest", "CheckRules", "Deploy", "SmokeTest"):
        assert state in entered

    tuning = sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert len(tuning) == 1
    tuning_name = tuning[0]["HyperParameterTuningJobName"]
    assert len(tuning_name) <= 32
    described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_name)
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["BestTrainingJob"]["TrainingJobStatus"] == "Completed"
    trials = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_name
    )["TrainingJobSummaries"]
    assert len(trials) == 2

    finals = [
        j
        for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
        if j["TrainingJobName"] not in {t["TrainingJobName"] for t in trials}
    ]
    assert len(finals) == 1
    final = sagemaker.describe_training_job(TrainingJobName=finals[0]["TrainingJobName"])
    assert final["TrainingJobStatus"] == "Completed"
    metrics = {m["MetricName"]: m["Value"] for m in final["FinalMetricDataList"]}
    assert 0.0 <= metrics["test:accuracy"] <= 1.0

    endpoint = sagemaker.describe_endpoint(EndpointName="stepsage-tiny")
    assert endpoint["EndpointStatus"] == "InService"

    image = sorted((folder / "test" / TINY_CLASSES[0]).glob("*.jpg"))[0].read_bytes()
    runtime = _client("sagemaker-runtime", info)
    response = runtime.invoke_endpoint(EndpointName="stepsage-tiny", Body=image, ContentType="image/jpeg")
    answer = json.loads(response["Body"].read())
    assert {p["label"] for p in answer["predictions"]} == set(TINY_CLASSES)

    request = urllib.request.Request(
        info["function_url"] + "?top_k=2", data=image, method="POST", headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        via_url = json.loads(response.read())
    assert len(via_url["predictions"]) == 2
    assert via_url["predictions"][0] == answer["predictions"][0]
    with urllib.request.urlopen(info["function_url"], timeout=60) as page:
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]

    # The run report, read through the same AWS APIs, from this real run.
    report = build_report(
        execution["executionArn"],
        tmp_path / "report",
        clients=lambda service: _client(service, info),
        samples=6,
    )
    html = report.read_text()
    for anchor, heading in SECTIONS:
        assert f'<section id="{anchor}"><h2>{heading}</h2>' in html
    assert "not available" not in html
    pictures = {p.stem.split("-", 1)[1] for p in report.parent.glob("*.png")}
    assert {
        "pipeline",
        "tuning-objective",
        "training-curves",
        "confusion-matrix",
        "profiler-phases",
    } <= pictures
    assert any(p.startswith("rule-") for p in pictures)
