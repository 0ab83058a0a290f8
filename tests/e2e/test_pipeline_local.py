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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambdas" / "common"))
from stepsage_lambda import naming

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

    # The deploy step's name for this stack's endpoint of the dataset (issue 9: one per stack and dataset).
    endpoint_name = naming.endpoint_name(info["stack_name"], "tiny")
    assert endpoint_name == "stepsage-local-tiny"
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    assert endpoint["EndpointStatus"] == "InService"

    image = sorted((folder / "test" / TINY_CLASSES[0]).glob("*.jpg"))[0].read_bytes()
    runtime = _client("sagemaker-runtime", info)
    response = runtime.invoke_endpoint(EndpointName=endpoint_name, Body=image, ContentType="image/jpeg")
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


def _wait_for_dataset_run(sfn: Any, arn: str, dataset: str, timeout: float) -> dict[str, Any]:
    """The finished execution of one dataset (execution names start with the dataset's slug), so several
    datasets can share one local cloud."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for summary in sfn.list_executions(stateMachineArn=arn)["executions"]:
            if summary["name"].startswith(f"{dataset}-") and summary["status"] != "RUNNING":
                return sfn.describe_execution(executionArn=summary["executionArn"])
        time.sleep(1)
    raise AssertionError(f"no finished execution for {dataset} after {timeout} s")


def _tar_member(s3: Any, uri: str, member: str) -> bytes:
    import io
    import tarfile

    bucket, key = uri.removeprefix("s3://").split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as archive:
        extracted = archive.extractfile(member)
        assert extracted is not None
        return extracted.read()


def test_every_accepted_format_trains_deploys_and_serves(
    local_up: dict[str, Any], formats_dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    """TIFF, WebP, BMP, PGM, GIF, 16-bit PNG, palette PNG with alpha, CMYK and EXIF-rotated JPEG: staged,
    trained, scored by the smoke test and answered by the URL, under their own media type or x-image."""
    import hashlib

    from contracts import images

    info = local_up
    folder, archive = formats_dataset
    s3, sfn, sagemaker = (_client(s, info) for s in ("s3", "stepfunctions", "sagemaker"))
    s3.upload_file(str(archive), info["data_bucket"], "datasets/formats.zip")
    execution = _wait_for_dataset_run(sfn, info["state_machine_arn"], "formats", timeout=300)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])

    # One dataset version: the manifest staging wrote and the run.json of the model that trained on it.
    manifest_bucket, manifest_key = output["dataset"]["manifest"].removeprefix("s3://").split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=manifest_bucket, Key=manifest_key)["Body"].read())
    assert manifest["dataset_hash"] == output["dataset"]["dataset_hash"]
    formats = {file["format"] for file in manifest["files"]}
    assert formats == {fmt.name for fmt in images.FORMATS}
    staged_prefix = manifest_key.rsplit("/", 1)[0] + "/"
    for file in manifest["files"][:20]:
        body = s3.get_object(Bucket=manifest_bucket, Key=staged_prefix + file["path"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == file["sha256"]
    finals = [
        j["TrainingJobName"]
        for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
        if j["TrainingJobName"].startswith(execution["name"]) and "-final-" in j["TrainingJobName"]
    ]
    assert len(finals) == 1
    final = sagemaker.describe_training_job(TrainingJobName=finals[0])
    run_info = json.loads(_tar_member(s3, final["ModelArtifacts"]["S3ModelArtifacts"], "run.json"))
    assert run_info["dataset_hash"] == manifest["dataset_hash"]

    url = info["function_url"] + "formats"
    test_images = sorted(p for p in (folder / "test").rglob("*") if p.is_file())
    assert {p.suffix for p in test_images} >= {".tif", ".webp", ".bmp", ".pgm", ".gif", ".png", ".jpeg"}
    for path in test_images:
        for content_type in (images.media_type_for_filename(path.name), "application/x-image"):
            request = urllib.request.Request(
                url, data=path.read_bytes(), method="POST", headers={"Content-Type": content_type}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200, (path.name, content_type)
                answer = json.loads(response.read())
            assert answer["predictions"][0]["label"] in TINY_CLASSES

    report = build_report(
        execution["executionArn"],
        tmp_path / "report",
        clients=lambda service: _client(service, info),
        samples=4,
    )
    html = report.read_text()
    assert manifest["dataset_hash"] in html
    assert '<span class="badge ok">same</span>' in html
