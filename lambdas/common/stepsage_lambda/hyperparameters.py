"""The training script's hyperparameter names and the search space the tuning job explores."""

from __future__ import annotations

from typing import Any

# train.py's CLI arguments (SageMaker passes each hyperparameter as `--name value`).
MODEL = "model"
WEIGHTS = "weights"
EPOCHS = "epochs"
IMAGE_SIZE = "image-size"
LEARNING_RATE = "lr"
BATCH_SIZE = "batch-size"
WEIGHT_DECAY = "weight-decay"
LABEL_SMOOTHING = "label-smoothing"
AUGMENTATION = "augment"
DEBUG_HOOK = "debug-hook"
PROFILE = "profile"

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
    return [
        {
            "Name": LEARNING_RATE,
            "MinValue": repr(lr_min),
            "MaxValue": repr(lr_max),
            "ScalingType": "Logarithmic",
        },
        {"Name": WEIGHT_DECAY, "MinValue": "1e-06", "MaxValue": "0.01", "ScalingType": "Logarithmic"},
        {"Name": LABEL_SMOOTHING, "MinValue": "0.0", "MaxValue": "0.2", "ScalingType": "Linear"},
    ]


def categorical_ranges() -> list[dict[str, Any]]:
    return [
        {"Name": BATCH_SIZE, "Values": ["32", "64", "128"]},
        {"Name": AUGMENTATION, "Values": ["light", "standard", "strong"]},
    ]


def grid_ranges(lr_min: float, lr_max: float) -> list[dict[str, Any]]:
    """Grid search takes only categorical ranges: three learning rates spread evenly in log space."""
    middle = (lr_min * lr_max) ** 0.5
    return [
        {"Name": LEARNING_RATE, "Values": [f"{v:.3g}" for v in (lr_min, middle, lr_max)]},
        {"Name": BATCH_SIZE, "Values": ["32", "64"]},
        {"Name": AUGMENTATION, "Values": ["light", "standard"]},
    ]
