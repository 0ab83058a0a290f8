"""Test-set scoring: accuracy, per-class precision/recall/F1 and the confusion matrix, as evaluation.json."""

from __future__ import annotations

from collections.abc import Sequence


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> list[list[int]]:
    """Rows are true classes, columns predicted classes (scikit-learn's convention)."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for truth, prediction in zip(y_true, y_pred, strict=True):
        matrix[truth][prediction] += 1
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    # A class never predicted (or absent) scores 0, as scikit-learn does with zero_division=0.
    return numerator / denominator if denominator else 0.0


def evaluation_report(labels: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int]) -> dict:
    """`{"accuracy", "labels", "per_class": {label: {precision, recall, f1, support}}, "confusion_matrix"}`"""
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    per_class = {}
    for index, label in enumerate(labels):
        true_positives = matrix[index][index]
        support = sum(matrix[index])
        predicted = sum(row[index] for row in matrix)
        precision = _ratio(true_positives, predicted)
        recall = _ratio(true_positives, support)
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": support,
        }
    correct = sum(matrix[i][i] for i in range(len(labels)))
    return {
        "accuracy": _ratio(correct, len(y_true)),
        "labels": list(labels),
        "per_class": per_class,
        "confusion_matrix": matrix,
    }
