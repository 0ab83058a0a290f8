"""select_best on a stubbed SageMaker: the final job's request from the winner passes the service model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lambda_harness import load_event, load_lambda_module, stubbed, validate_request

pytestmark = pytest.mark.integration

selection = load_lambda_module("select_best", "selection")
from stepsage_lambda import naming  # noqa: E402
from stepsage_lambda.errors import NoCompletedTrainingJob  # noqa: E402
from stepsage_lambda.payloads import SelectBestInput  # noqa: E402
from stepsage_lambda.sagemaker_api import SageMakerApi  # noqa: E402

WHEN = datetime(2026, 11, 1, tzinfo=UTC)
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-gpu-py311"
ENV = {"ARTIFACTS_BUCKET": "stepsage-artifacts-123456789012", "TRAINING_IMAGE_URI": IMAGE, "STACK_NAME": "s"}
ROLE = "arn:aws:iam::123456789012:role/stepsage-sagemaker"
METRICS = [{"Name": "valid:accuracy", "Regex": r"\bvalid_accuracy=([0-9.]+)"}]
BEST = "digits-1c0f6a2d9b3e-h0-002-5e6f7a8b"
RULE_IMAGE = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"


def _tuning(best: dict[str, Any] | None) -> dict[str, Any]:
    described: dict[str, Any] = {
        "HyperParameterTuningJobName": "digits-1c0f6a2d9b3e-h0",
        "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/x",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxParallelTrainingJobs": 2},
        },
        "HyperParameterTuningJobStatus": "Completed",
        "CreationTime": WHEN,
        "TrainingJobStatusCounters": {"Completed": 3, "NonRetryableError": 1},
        "ObjectiveStatusCounters": {"Succeeded": 3},
    }
    if best:
        described["BestTrainingJob"] = best
    return described


def _trial() -> dict[str, Any]:
    return {
        "TrainingJobName": BEST,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{BEST}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://b/runs/x/tuning/{BEST}/output/model.tar.gz"},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "HyperParameters": {
            "lr": "0.003",
            "batch-size": "64",
            "epochs": "10",
            "_tuning_objective_metric": "valid:accuracy",
        },
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": WHEN,
    }


@pytest.mark.parametrize("mode", ["embedded", "managed", "off"])
def test_final_request_from_the_best_trial_passes_the_service_model(mode: str) -> None:
    client, stubber = stubbed("sagemaker")
    best = {
        "TrainingJobName": BEST,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{BEST}",
        "TunedHyperParameters": {"lr": "0.003", "batch-size": "64"},
        "CreationTime": WHEN,
        "TrainingJobStatus": "Completed",
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "valid:accuracy", "Value": 0.96},
    }
    stubber.add_response(
        "describe_hyper_parameter_tuning_job",
        _tuning(best),
        {"HyperParameterTuningJobName": "digits-1c0f6a2d9b3e-h0"},
    )
    stubber.add_response("describe_training_job", _trial(), {"TrainingJobName": BEST})
    env = {
        **ENV,
        "DEBUGGER_MODE": mode,
        "RULE_EVALUATOR_IMAGE_URI": RULE_IMAGE,
    }
    event = load_event("select_best")
    result = selection.select_best(
        SelectBestInput.model_validate(event),
        settings=selection.SelectionSettings.from_env(env),
        sagemaker=SageMakerApi(client),
    ).model_dump(mode="json")
    stubber.assert_no_pending_responses()
    assert result["best"]["objective"] == {"name": "valid:accuracy", "value": 0.96}
    assert result["final"]["debugger_mode"] == mode
    request = result["final"]["request"]
    assert (
        request["HyperParameters"]["lr"] == "0.003"
        and "_tuning_objective_metric" not in request["HyperParameters"]
    )
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    # What TrainFinal sends: the request plus the name and role the state machine adds.
    longest = naming.final_training_job_name("x" * naming.EXECUTION_NAME_MAX, 99)
    validate_request("CreateTrainingJob", {"TrainingJobName": longest, "RoleArn": ROLE, **request})


def test_a_tuning_job_without_a_winner_is_a_typed_error() -> None:
    client, stubber = stubbed("sagemaker")
    stubber.add_response("describe_hyper_parameter_tuning_job", _tuning(None))
    with pytest.raises(NoCompletedTrainingJob, match="Completed"):
        SageMakerApi(client).best_training_job("digits-1c0f6a2d9b3e-h0")
