"""check_rules against moto S3 (the job's output.tar.gz) and a stubbed SageMaker (the job's description)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from lambda_harness import FakeLambdaContext, load_event, load_lambda_module, stubbed, tarball
from moto import mock_aws

pytestmark = pytest.mark.integration

app = load_lambda_module("check_rules", "app")
rules_check = load_lambda_module("check_rules", "rules_check")
from stepsage_lambda.errors import RulesStillEvaluating  # noqa: E402
from stepsage_lambda.s3_api import S3Api  # noqa: E402
from stepsage_lambda.sagemaker_api import SageMakerApi  # noqa: E402

BUCKET = "stepsage-artifacts-123456789012"
JOB = "digits-1c0f6a2d9b3e-final-0"
WHEN = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _job(statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    described: dict[str, Any] = {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/runs/x/final/{JOB}/output/model.tar.gz"},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/runs/x/final/"},
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": WHEN,
    }
    if statuses is not None:
        described["DebugRuleEvaluationStatuses"] = statuses
    return described


def _embedded_verdict(s3: Any) -> dict[str, Any]:
    """CheckRules on the final job JOB, in embedded mode under the default gate, reading the moto S3."""
    sagemaker, stubber = stubbed("sagemaker")
    stubber.add_response("describe_training_job", _job(), {"TrainingJobName": JOB})
    return rules_check.check_rules(
        training_job_name=JOB,
        debugger_mode="embedded",
        gate_name="rules",
        sagemaker=SageMakerApi(sagemaker),
        s3=S3Api(s3),
    ).model_dump()


def test_embedded_verdicts_are_read_from_the_output_tarball(s3: Any) -> None:
    verdicts = {
        "rules": [
            {
                "name": "Overfit",
                "status": "IssuesFound",
                "params": {"ratio_threshold": 0.1},
                "message": "gap 0.4",
            },
            {"name": "VanishingGradient", "status": "NoIssuesFound", "params": {"threshold": 1e-7}},
        ],
        "issues_found": True,
    }
    # The verdicts sit after bulky tensors, as in a real job's output; the stream is read until they appear.
    body = tarball(
        {"tensors/step.bin": b"\0" * 200_000, "rules/verdicts.json": json.dumps(verdicts).encode()}
    )
    s3.put_object(Bucket=BUCKET, Key=f"runs/x/final/{JOB}/output/output.tar.gz", Body=body)
    result = _embedded_verdict(s3)
    # Overfit is an advisory under the `rules` gate: reported, but the run may deploy.
    assert result["verdict"] == "IssuesFound" and result["proceed"] is True
    assert result["advisories"] == ["Overfit"]
    assert result["rules"][0] == {"name": "Overfit", "status": "IssuesFound", "message": "gap 0.4"}


def test_managed_rules_in_progress_raise_then_pass_once_done(s3: Any) -> None:
    sagemaker, stubber = stubbed("sagemaker")
    running = [{"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "InProgress"}]
    done = [{"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "NoIssuesFound"}]
    stubber.add_response("describe_training_job", _job(running), {"TrainingJobName": JOB})
    stubber.add_response("describe_training_job", _job(done), {"TrainingJobName": JOB})
    check = {
        "training_job_name": JOB,
        "debugger_mode": "managed",
        "gate_name": "strict",
        "sagemaker": SageMakerApi(sagemaker),
        "s3": S3Api(s3),
    }
    with pytest.raises(RulesStillEvaluating):
        rules_check.check_rules(**check)
    result = rules_check.check_rules(**check).model_dump()
    assert (result["verdict"], result["proceed"]) == ("NoIssuesFound", True)


# Was test_handler_with_debugger_off_skips_without_calls, which asserted that a strict gate let a run whose
# rules never ran deploy (proceed True). The gate now fails closed: only `always` deploys without rules.
@pytest.mark.parametrize(("gate", "proceed"), [("rules", False), ("strict", False), ("always", True)])
def test_handler_with_debugger_off_blocks_unless_always(
    monkeypatch: pytest.MonkeyPatch, gate: str, proceed: bool
) -> None:
    app.settings.cache_clear()
    monkeypatch.setenv("DEPLOY_GATE", gate)
    event = {**load_event("check_rules"), "debugger_mode": "off"}
    try:
        result = app.lambda_handler(event, FakeLambdaContext())
    finally:
        app.settings.cache_clear()
    reason = result.pop("reason")
    assert result == {
        "verdict": "Skipped",
        "rules": [],
        "mode": "off",
        "gate": gate,
        "advisories": [],
        "proceed": proceed,
        "blocked_by": None if proceed else "RulesDidNotRun",
    }
    assert "DebuggerMode=off" in reason
    assert ("DeployGate=always deploys whatever the rules say" in reason) is proceed


@pytest.mark.parametrize("output", ["no tarball", "no verdicts in it"])
def test_missing_verdicts_file_blocks_the_default_gate(s3: Any, output: str) -> None:
    if output == "no verdicts in it":
        body = tarball({"tensors/step.bin": b"\0" * 1000})
        s3.put_object(Bucket=BUCKET, Key=f"runs/x/final/{JOB}/output/output.tar.gz", Body=body)
    result = _embedded_verdict(s3)
    assert (result["verdict"], result["proceed"], result["blocked_by"]) == ("Error", False, "RuleErrors")
    assert "rules/verdicts.json" in result["reason"]


def test_handler_rejects_an_unknown_mode() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        app.lambda_handler({**load_event("check_rules"), "debugger_mode": "sometimes"}, FakeLambdaContext())
