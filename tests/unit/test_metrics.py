"""The metric lines and their regexes agree: what train.py prints, MetricDefinitions read back."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import metrics

pytestmark = pytest.mark.unit


def test_epoch_line_round_trips_through_metric_definitions():
    line = metrics.format_epoch_line(
        3, train_loss=0.41, train_accuracy=0.88, valid_loss=0.52, valid_accuracy=0.873, lr=0.001
    )
    assert line.startswith("epoch=3 train_loss=0.41 ")
    parsed = metrics.parse_metrics(line + "\n" + metrics.format_test_line(0.951))
    assert parsed == {
        "train:loss": [0.41],
        "train:accuracy": [0.88],
        "valid:loss": [0.52],
        "valid:accuracy": [0.873],
        "test:accuracy": [0.951],
    }


def test_parse_keeps_every_epoch_in_order_and_reads_exponents_and_nan():
    log = "\n".join(
        [
            metrics.format_epoch_line(
                1, train_loss=2.5e-8, train_accuracy=0.1, valid_loss=float("nan"), valid_accuracy=0.2
            ),
            "some other output valid_accuracy is not a metric",
            metrics.format_epoch_line(
                2, train_loss=1.0, train_accuracy=0.5, valid_loss=0.9, valid_accuracy=0.6
            ),
        ]
    )
    parsed = metrics.parse_metrics(log)
    assert parsed["valid:accuracy"] == [0.2, 0.6]
    assert parsed["train:loss"] == [2.5e-8, 1.0]
    assert str(parsed["valid:loss"][0]) == "nan"


def test_definitions_fit_sagemaker_limits():
    # MetricDefinition: Name 1-255 chars, Regex 1-500 chars with exactly one capture group.
    names = [d["Name"] for d in metrics.METRIC_DEFINITIONS]
    assert len(set(names)) == len(names)
    assert metrics.OBJECTIVE_METRIC in names
    for definition in metrics.METRIC_DEFINITIONS:
        assert 1 <= len(definition["Name"]) <= 255
        assert 1 <= len(definition["Regex"]) <= 500
        assert re.compile(definition["Regex"]).groups == 1


def test_epoch_line_requires_every_core_field():
    with pytest.raises(KeyError):
        metrics.format_epoch_line(1, train_loss=1.0)
