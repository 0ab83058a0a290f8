"""The rules' pure decisions, checked with literal numbers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import rules

pytestmark = pytest.mark.unit


def test_vanishing_layers_are_those_below_the_threshold():
    means = {"fc.weight": 5e-8, "fc.bias": 1e-7, "conv.weight": 3e-3}
    assert rules.vanishing_layers(means, 1e-7) == ["fc.weight"]
    assert rules.vanishing_layers(means, 1e-2) == ["conv.weight", "fc.bias", "fc.weight"]
    assert rules.vanishing_layers({"x": math.nan}, 1e-7) == []


def test_nonfinite_kind_separates_nan_from_infinity():
    assert rules.nonfinite_kind([0.1, math.nan, 2.0], only_nan=False) == "nan"
    assert rules.nonfinite_kind([0.1, math.inf], only_nan=False) == "inf"
    assert rules.nonfinite_kind([0.1, -math.inf], only_nan=True) is None
    assert rules.nonfinite_kind([None, 0.0, 1e30], only_nan=False) is None


def test_loss_check_points_follow_the_aws_example():
    # Loss saved every 3 steps, num_steps 10: step 21 is compared with step 9 and the next check is 33.
    points = dict(rules.loss_check_points(list(range(0, 40, 3)), 10))
    assert points == {12: 0, 24: 12, 36: 24}
    from_nine = dict(rules.loss_check_points(list(range(9, 40, 3)), 10))
    assert from_nine[21] == 9 and 33 in from_nine and 30 not in from_nine
    assert rules.loss_check_points([0, 1, 2], 10) == []


def test_loss_not_decreasing_with_and_without_diff_percent():
    assert rules.loss_not_decreasing(1.0, 1.0, 0.0) is True
    assert rules.loss_not_decreasing(1.0, 0.99, 0.0) is False
    assert rules.loss_not_decreasing(1.0, 0.95, 10.0) is True
    assert rules.loss_not_decreasing(1.0, 0.85, 10.0) is False
    assert rules.loss_not_decreasing(1.0, math.nan, 0.0) is True
    assert rules.loss_decrease_percent(2.0, 1.5) == pytest.approx(25.0)


def test_overfit_ratio_and_patience():
    assert rules.overfit_ratio(0.5, 0.6) == pytest.approx(0.2)
    assert rules.overfit_ratio(0.5, 0.4) == pytest.approx(-0.2)
    assert rules.overfit_ratio(0.0, 0.3) == math.inf
    assert rules.exceeded_for([0.05, 0.2, 0.3], 0.1, patience=1) == 1
    assert rules.exceeded_for([0.2, 0.05, 0.2, 0.3], 0.1, patience=2) == 3
    assert rules.exceeded_for([0.2, 0.05, 0.2], 0.1, patience=2) is None


def test_stalled_at_counts_values_that_do_not_beat_the_best_by_delta():
    assert rules.stalled_at([1.0, 0.8, 0.75, 0.72, 0.71], patience=3, delta=0.1) == 4
    assert rules.stalled_at([1.0, 0.8, 0.6, 0.4, 0.2], patience=3, delta=0.1) is None
    assert rules.stalled_at([1.0, 1.0], patience=1, delta=0.0) == 1


def test_variance_ratio_and_percentile_spread():
    assert rules.variance_ratio({"a": 0.5, "b": 2.0, "c": 1.0}) == pytest.approx(4.0)
    assert rules.variance_ratio({"a": 0.0, "b": 1.0}) == math.inf
    assert rules.variance_ratio({"a": 3.0}) == 1.0
    assert rules.percentile_spread(1.0) == pytest.approx(3.29)
