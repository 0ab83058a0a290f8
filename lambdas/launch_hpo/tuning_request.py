"""The CreateHyperParameterTuningJob request, as a pure function of the staged dataset and the settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import hyperparameters as contract
from stepsage_lambda import hyperparameters as hp
from stepsage_lambda.errors import ConfigurationError
from stepsage_lambda.naming import stack_tags
from stepsage_lambda.payloads import StagedDataset
from stepsage_lambda.settings import (
    EARLY_STOPPING_TYPES,
    TUNING_STRATEGIES,
    TrainingSettings,
    choice,
    declared,
    hyperparameter,
    integer,
)
from stepsage_lambda.training_jobs import input_channels, stopping_condition


@dataclass(frozen=True)
class TuningSettings:
    strategy: str
    max_jobs: int
    max_parallel_jobs: int
    early_stopping: str
    lr_min: float
    lr_max: float

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "TUNING_STRATEGY",
        "MAX_TRAINING_JOBS",
        "MAX_PARALLEL_TRAINING_JOBS",
        "TUNING_EARLY_STOPPING",
        "LR_MIN",
        "LR_MAX",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TuningSettings:
        env = declared(env, cls)
        lr_min, lr_max = (
            float(hyperparameter(env, name, contract.LEARNING_RATE, repr(default)))
            for name, default in zip(("LR_MIN", "LR_MAX"), contract.DEFAULT_LR_RANGE, strict=True)
        )
        if lr_min >= lr_max:
            raise ConfigurationError(f"LR_MIN={lr_min!r} must be below LR_MAX={lr_max!r}")
        return cls(
            strategy=choice(env, "TUNING_STRATEGY", TUNING_STRATEGIES, "Bayesian"),
            max_jobs=_bounded(env, "MAX_TRAINING_JOBS", 8, contract.MAX_TRAINING_JOBS),
            max_parallel_jobs=_bounded(
                env, "MAX_PARALLEL_TRAINING_JOBS", 2, contract.MAX_PARALLEL_TRAINING_JOBS
            ),
            early_stopping=choice(env, "TUNING_EARLY_STOPPING", EARLY_STOPPING_TYPES, "Auto"),
            lr_min=lr_min,
            lr_max=lr_max,
        )


def _bounded(env: Mapping[str, str], name: str, default: int, bounds: tuple[int, int]) -> int:
    value = integer(env, name, default, minimum=bounds[0])
    if value > bounds[1]:
        raise ConfigurationError(f"{name}={value} must be at most {bounds[1]}")
    return value


def static_hyperparameters(settings: TrainingSettings, code_uri: str, epochs: int) -> dict[str, str]:
    return {
        **settings.extra_hyperparameters,
        hp.MODEL: settings.model_architecture,
        hp.WEIGHTS: settings.weights,
        hp.IMAGE_SIZE: settings.image_size,
        hp.EPOCHS: str(epochs),
        # Trials never carry the hook: a tuning job's definition cannot configure Debugger.
        **hp.debugger_switches("off"),
        hp.PROGRAM: "train.py",
        hp.SUBMIT_DIRECTORY: code_uri,
        hp.REGION: settings.region,
    }


def _search_space(tuning: TuningSettings) -> tuple[dict[str, Any], int | None]:
    """Parameter ranges and the job count: Grid enumerates categorical values, so its count is the grid's."""
    if tuning.strategy == "Grid":
        categorical = hp.grid_ranges(tuning.lr_min, tuning.lr_max)
        size = math.prod(len(r["Values"]) for r in categorical)
        return {"CategoricalParameterRanges": categorical}, size
    ranges = {
        "ContinuousParameterRanges": hp.continuous_ranges(tuning.lr_min, tuning.lr_max),
        "CategoricalParameterRanges": hp.categorical_ranges(),
    }
    return ranges, tuning.max_jobs


def tuning_job_config(tuning: TuningSettings, objective: dict[str, str], epochs: int) -> dict[str, Any]:
    """HyperParameterTuningJobConfig for the chosen strategy, with its search space."""
    ranges, max_jobs = _search_space(tuning)
    limits: dict[str, int] = {"MaxParallelTrainingJobs": min(tuning.max_parallel_jobs, max_jobs or 1)}
    if max_jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = max_jobs
    config: dict[str, Any] = {
        "Strategy": tuning.strategy,
        "HyperParameterTuningJobObjective": objective,
        "ResourceLimits": limits,
        "ParameterRanges": ranges,
        # Hyperband stops trials itself; AWS rejects it with early stopping on.
        "TrainingJobEarlyStoppingType": "Off" if tuning.strategy == "Hyperband" else tuning.early_stopping,
    }
    if tuning.strategy == "Hyperband":
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": epochs}}
    return config


def build_tuning_request(
    *,
    execution_name: str,
    dataset: StagedDataset,
    role_arn: str,
    code_uri: str,
    metric_definitions: list[dict[str, str]],
    objective: dict[str, str],
    settings: TrainingSettings,
    tuning: TuningSettings,
) -> dict[str, Any]:
    """Everything of CreateHyperParameterTuningJob except its name, which the state machine sets."""
    config = tuning_job_config(tuning, objective, settings.epochs)
    definition: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions,
        },
        "StaticHyperParameters": static_hyperparameters(settings, code_uri, settings.epochs),
        "RoleArn": role_arn,
        "InputDataConfig": input_channels(dataset.channels),
        "OutputDataConfig": {
            "S3OutputPath": f"s3://{settings.artifacts_bucket}/runs/{execution_name}/tuning/"
        },
        "ResourceConfig": {
            "InstanceType": settings.tuning_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": stopping_condition(settings),
        # Trials share no CheckpointConfig: one S3 prefix for all of them would let a trial resume another's.
        "EnableManagedSpotTraining": settings.use_spot,
    }
    return {
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "Tags": stack_tags(settings.stack_name, dataset.dataset_name, execution_name),
    }
