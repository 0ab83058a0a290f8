"""evaluation.json: its exact shape, and values that agree with scikit-learn's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import evaluation

pytestmark = pytest.mark.unit

LABELS = ["001.cat", "002.dog", "003.fox"]
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 2, 2, 0, 1]


def test_shape_is_exactly_the_contract():
    report = evaluation.evaluation_report(LABELS, Y_TRUE, Y_PRED)
    assert set(report) == {"accuracy", "labels", "per_class", "confusion_matrix"}
    assert report["labels"] == LABELS
    assert list(report["per_class"]) == LABELS
    for values in report["per_class"].values():
        assert set(values) == {"precision", "recall", "f1", "support"}
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    assert report["accuracy"] == pytest.approx(6 / 9)


def test_values_match_scikit_learn():
    from sklearn.metrics import precision_recall_fscore_support

    report = evaluation.evaluation_report(LABELS, Y_TRUE, Y_PRED)
    precision, recall, f1, support = precision_recall_fscore_support(
        Y_TRUE, Y_PRED, labels=[0, 1, 2], zero_division=0
    )
    for index, label in enumerate(LABELS):
        values = report["per_class"][label]
        assert values["precision"] == pytest.approx(precision[index])
        assert values["recall"] == pytest.approx(recall[index])
        assert values["f1"] == pytest.approx(f1[index])
        assert values["support"] == support[index]


def test_a_class_never_predicted_scores_zero_not_nan():
    report = evaluation.evaluation_report(["a", "b"], [0, 1], [0, 0])
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_class"]["a"]["precision"] == pytest.approx(0.5)
