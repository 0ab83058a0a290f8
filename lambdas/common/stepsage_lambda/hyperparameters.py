"""The tuning and final requests' hyperparameters in SageMaker's shapes, from contracts/hyperparameters.py."""

from __future__ import annotations

from typing import Any

from contracts import hyperparameters as contract
from contracts.hyperparameters import (
    AUGMENTATION,
    BATCH_SIZE,
    DEBUG_HOOK,
    EPOCHS,
    IMAGE_SIZE,
    LABEL_SMOOTHING,
    LEARNING_RATE,
    MODEL,
    PROFILE,
    WEIGHT_DECAY,
    WEIGHTS,
)

__all__ = [
    "AUGMENTATION",
    "BATCH_SIZE",
    "DEBUG_HOOK",
    "EPOCHS",
    "IMAGE_SIZE",
    "LABEL_SMOOTHING",
    "LEARNING_RATE",
    "MODEL",
    "PROFILE",
    "WEIGHTS",
    "WEIGHT_DECAY",
]

# The platform's keys: the container reads them and never passes them to the script.
PROGRAM = "sagemaker_program"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
REGION = "sagemaker_region"
# SageMaker adds this one to every training job a tuning job launches; it is not the script's.
TUNING_OBJECTIVE_KEY = "_tuning_objective_metric"


def debugger_switches(mode: str) -> dict[str, str]:
    """train.py's hook and profiler switches for a debugger mode (tuning trials always run with `off`).

    `embedded` records tensors, evaluates our rules and profiles inside the job; `managed` records tensors
    for SageMaker's rule jobs and leaves profiling to SageMaker's ProfilerConfig.
    """
    hook = "on" if mode in ("embedded", "managed") else "off"
    return {DEBUG_HOOK: hook, PROFILE: "on" if mode == "embedded" else "off"}


def continuous_ranges(lr_min: float, lr_max: float) -> list[dict[str, Any]]:
    learning_rate = contract.ContinuousRange(LEARNING_RATE, lr_min, lr_max, "Logarithmic")
    return [
        {
            "Name": r.name,
            "MinValue": repr(r.minimum),
            "MaxValue": repr(r.maximum),
            "ScalingType": r.scaling,
        }
        for r in (learning_rate, *contract.CONTINUOUS_RANGES)
    ]


def categorical_ranges() -> list[dict[str, Any]]:
    return [{"Name": name, "Values": list(values)} for name, values in contract.CATEGORICAL_RANGES.items()]


def grid_ranges(lr_min: float, lr_max: float) -> list[dict[str, Any]]:
    """Grid search takes only categorical ranges, the learning rate's spread evenly in log space."""
    grid = {LEARNING_RATE: contract.grid_learning_rates(lr_min, lr_max), **contract.GRID_RANGES}
    return [{"Name": name, "Values": list(values)} for name, values in grid.items()]
