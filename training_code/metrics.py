"""The fixed-format metric lines the training script prints, and the regexes that read them back."""

from __future__ import annotations

import re

_NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"

# The single source of the metric regexes: SageMaker MetricDefinitions, the local emulator and tests use it.
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": "train:loss", "Regex": rf"\btrain_loss={_NUMBER}"},
    {"Name": "train:accuracy", "Regex": rf"\btrain_accuracy={_NUMBER}"},
    {"Name": "valid:loss", "Regex": rf"\bvalid_loss={_NUMBER}"},
    {"Name": "valid:accuracy", "Regex": rf"\bvalid_accuracy={_NUMBER}"},
    {"Name": "test:accuracy", "Regex": rf"\btest_accuracy={_NUMBER}"},
]
OBJECTIVE_METRIC = "valid:accuracy"
OBJECTIVE_TYPE = "Maximize"

EPOCH_FIELDS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy")


def format_epoch_line(epoch: int, **values: float) -> str:
    """`epoch=3 train_loss=0.4100 train_accuracy=0.8800 valid_loss=0.5200 valid_accuracy=0.8730 ...`."""
    parts = [f"epoch={epoch}"]
    for key in EPOCH_FIELDS:
        parts.append(f"{key}={values[key]:.6g}")
    for key, value in values.items():
        if key not in EPOCH_FIELDS:
            parts.append(f"{key}={value:.6g}")
    return " ".join(parts)


def format_test_line(accuracy: float) -> str:
    return f"test_accuracy={accuracy:.6g}"


def parse_metrics(
    log_text: str, definitions: list[dict[str, str]] = METRIC_DEFINITIONS
) -> dict[str, list[float]]:
    """Every value each definition matches in a log, in order (SageMaker keeps the last as final)."""
    found: dict[str, list[float]] = {}
    for definition in definitions:
        values = [float(m.group(1)) for m in re.finditer(definition["Regex"], log_text)]
        if values:
            found[definition["Name"]] = values
    return found
