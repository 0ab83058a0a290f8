"""select_best's pure parts: the winner's summary and the final training request per debugger mode."""

from __future__ import annotations

from typing import Any

import pytest
from events_fixture import load_event, load_lambda_module

pytestmark = pytest.mark.unit

final_training = load_lambda_module("select_best", "final_training")
from stepsage_lambda.errors import ConfigurationError  # noqa: E402
from stepsage_lambda.payloads import StagedDataset  # noqa: E402
from stepsage_lambda.settings import TrainingSettings  # noqa: E402

ENV = {
    "ARTIFACTS_BUCKET": "stepsage-artifacts-123456789012",
    "TRAINING_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-gpu-py311",
    "FINAL_INSTANCE_TYPE": "ml.g5.xlarge",
    "FINAL_EPOCHS": "15",
}
TRIAL = {
    "lr": "0.0031",
    "batch-size": "64",
    "epochs": "10",
    "debug-hook": "off",
    "profile": "off",
    "sagemaker_program": "train.py",
    "_tuning_objective_metric": "valid:accuracy",
}


def _request(mode: str, rule_image: str | None = None) -> dict[str, Any]:
    return final_training.final_training_request(
        execution_name="digits-1c0f6a2d9b3e",
        dataset=StagedDataset.model_validate(load_event("select_best")["dataset"]),
        trial_hyperparameters=TRIAL,
        metric_definitions=[{"Name": "valid:accuracy", "Regex": "valid_accuracy=([0-9.]+)"}],
        settings=TrainingSettings.from_env({**ENV, "DEBUGGER_MODE": mode}),
        rule_image=rule_image,
    )


def test_final_hyperparameters_keep_the_winner_and_set_the_final_run() -> None:
    chosen = final_training.final_hyperparameters(
        TRIAL, TrainingSettings.from_env({**ENV, "DEBUGGER_MODE": "embedded"})
    )
    assert chosen == {
        "lr": "0.0031",
        "batch-size": "64",
        "epochs": "15",
        "debug-hook": "on",
        "profile": "on",
        "sagemaker_program": "train.py",
    }


@pytest.mark.parametrize("mode", ["embedded", "off"])
def test_embedded_and_off_carry_no_debugger_configuration(mode: str) -> None:
    request = _request(mode)
    assert set(request) == set(final_training.BASE_FIELDS)
    assert request["ProfilerConfig"] == {"DisableProfiler": True}
    switches = {"embedded": ("on", "on"), "off": ("off", "off")}[mode]
    assert (request["HyperParameters"]["debug-hook"], request["HyperParameters"]["profile"]) == switches
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert request["CheckpointConfig"]["S3Uri"].endswith("/runs/digits-1c0f6a2d9b3e/checkpoints/final/")


def test_managed_mode_adds_hook_rules_and_profiler() -> None:
    request = _request(
        "managed", rule_image="503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"
    )
    assert set(request) == set(final_training.BASE_FIELDS + final_training.MANAGED_FIELDS)
    rules = request["DebugRuleConfigurations"]
    assert [r["RuleConfigurationName"] for r in rules] == list(final_training.MANAGED_RULES)
    assert all(r["RuleParameters"]["rule_to_invoke"] == r["RuleConfigurationName"] for r in rules)
    assert request["ProfilerConfig"]["S3OutputPath"].endswith("/profiler/")


def test_managed_mode_without_rule_image_fails_clearly() -> None:
    with pytest.raises(ConfigurationError, match="RULE_EVALUATOR_IMAGE_URI"):
        _request("managed")


def test_best_summary() -> None:
    best = {
        "TrainingJobName": "digits-1c0f6a2d9b3e-h0-003-1a2b3c4d",
        "TunedHyperParameters": {"lr": "0.0031", "batch-size": "64"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "valid:accuracy", "Value": 0.97},
    }
    described = {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/runs/x/tuning/job/output/model.tar.gz"}}
    assert final_training.best_summary(best, described).model_dump() == {
        "training_job_name": "digits-1c0f6a2d9b3e-h0-003-1a2b3c4d",
        "tuned_hyperparameters": {"lr": "0.0031", "batch-size": "64"},
        "objective": {"name": "valid:accuracy", "value": 0.97},
        "model_artifacts": "s3://b/runs/x/tuning/job/output/model.tar.gz",
    }
