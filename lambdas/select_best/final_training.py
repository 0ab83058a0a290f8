"""The best trial's summary and the final training job's request, as pure functions of plain data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepsage_lambda import hyperparameters as hp
from stepsage_lambda.errors import ConfigurationError
from stepsage_lambda.naming import stack_tags
from stepsage_lambda.payloads import BestJob, StagedDataset
from stepsage_lambda.settings import TrainingSettings
from stepsage_lambda.training_jobs import input_channels, stopping_condition

# The built-in rules, by the names SageMaker's rule container takes in `rule_to_invoke`; defaults apply.
MANAGED_RULES = (
    "VanishingGradient",
    "ExplodingTensor",
    "Overfit",
    "Overtraining",
    "PoorWeightInitialization",
    "LossNotDecreasing",
)
MANAGED_COLLECTIONS = ("losses", "gradients", "weights", "biases")

# Request fields the ASL's TrainFinal states pass by path; the state machine test checks both sides agree.
BASE_FIELDS = (
    "AlgorithmSpecification",
    "HyperParameters",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "ProfilerConfig",
    "Tags",
)
MANAGED_FIELDS = ("DebugHookConfig", "DebugRuleConfigurations")


def best_summary(best_training_job: Mapping[str, Any], described: Mapping[str, Any]) -> BestJob:
    """What the run reports about the winning trial (BestTrainingJob plus its DescribeTrainingJob)."""
    metric = best_training_job.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return BestJob.model_validate(
        {
            "training_job_name": best_training_job["TrainingJobName"],
            "tuned_hyperparameters": dict(best_training_job.get("TunedHyperParameters") or {}),
            "objective": {"name": metric.get("MetricName"), "value": metric.get("Value")},
            "model_artifacts": (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        }
    )


def final_hyperparameters(
    trial_hyperparameters: Mapping[str, str], settings: TrainingSettings
) -> dict[str, str]:
    """The winning trial's hyperparameters, with the final run's epochs and debugger switches."""
    chosen = {k: str(v) for k, v in trial_hyperparameters.items() if k != hp.TUNING_OBJECTIVE_KEY}
    chosen[hp.EPOCHS] = str(settings.final_epochs)
    chosen.update(hp.debugger_switches(settings.debugger_mode))
    return chosen


def _run_prefix(settings: TrainingSettings, execution_name: str) -> str:
    return f"s3://{settings.artifacts_bucket}/runs/{execution_name}"


def final_training_request(
    *,
    execution_name: str,
    dataset: StagedDataset,
    trial_hyperparameters: Mapping[str, str],
    metric_definitions: list[dict[str, str]],
    settings: TrainingSettings,
    rule_image: str | None,
) -> dict[str, Any]:
    """CreateTrainingJob for the final model, less TrainingJobName and RoleArn (the ASL sets those)."""
    prefix = _run_prefix(settings, execution_name)
    request: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions,
        },
        "HyperParameters": final_hyperparameters(trial_hyperparameters, settings),
        "InputDataConfig": input_channels(dataset.channels),
        "OutputDataConfig": {"S3OutputPath": f"{prefix}/final/"},
        "ResourceConfig": {
            "InstanceType": settings.final_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": stopping_condition(settings),
        "EnableManagedSpotTraining": settings.use_spot,
        # Unique to this run, so a spot interruption resumes this job and nothing else.
        "CheckpointConfig": {"S3Uri": f"{prefix}/checkpoints/final/"},
        # Our own profiler runs inside the job in embedded mode; SageMaker's is for managed mode only.
        "ProfilerConfig": {"DisableProfiler": True},
        "Tags": stack_tags(settings.stack_name, dataset.dataset_name, execution_name),
    }
    if settings.debugger_mode == "managed":
        if not rule_image:
            raise ConfigurationError(
                "DEBUGGER_MODE=managed needs RULE_EVALUATOR_IMAGE_URI (the region's Debugger rule image)"
            )
        request["ProfilerConfig"] = {
            "S3OutputPath": f"{prefix}/profiler/",
            "ProfilingIntervalInMilliseconds": 500,
        }
        request["DebugHookConfig"] = {
            "S3OutputPath": f"{prefix}/debug/",
            "CollectionConfigurations": [{"CollectionName": name} for name in MANAGED_COLLECTIONS],
        }
        request["DebugRuleConfigurations"] = [
            {
                "RuleConfigurationName": rule,
                "RuleEvaluatorImage": rule_image,
                "RuleParameters": {"rule_to_invoke": rule},
            }
            for rule in MANAGED_RULES
        ]
    return request
