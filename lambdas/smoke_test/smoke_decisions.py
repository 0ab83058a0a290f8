"""SmokeTest's decisions as pure functions: the accuracy it must reach, and which old resources go."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def smoke_threshold(expected_accuracy: float, images: int, margin: float) -> float:
    """The lowest smoke-test accuracy that still agrees with evaluation.json.

    With few images the sample's own noise can exceed the margin, so the bound widens to three binomial
    standard deviations when that is larger.
    """
    if images <= 0:
        return 0.0
    noise = 3 * math.sqrt(max(expected_accuracy * (1 - expected_accuracy), 0.0) / images)
    return max(0.0, expected_accuracy - max(margin, noise))


def stale_resources(
    newest_first: Sequence[tuple[str, Mapping[str, str]]],
    *,
    stack_name: str,
    dataset_name: str,
    keep: int,
    protected: set[str],
) -> list[str]:
    """Names of this stack's resources for this dataset beyond the newest `keep`, never a protected one."""
    ours = [
        name
        for name, tags in newest_first
        if tags.get("stepsage:stack") == stack_name and tags.get("stepsage:dataset") == dataset_name
    ]
    return [name for name in ours[keep:] if name not in protected]
