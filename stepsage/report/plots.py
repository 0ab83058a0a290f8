"""The report's plots: each function takes plain data and returns a matplotlib Figure (Agg, no pyplot)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stepsage.report.collect import Sample, unquote

GOOD, BAD, BEST, MUTED = "#2e7d32", "#c62828", "#f9a825", "#9e9e9e"
TRIAL_COLOURS = {"Completed": "#1565c0", "Stopped": "#8e24aa", "Failed": BAD, "InProgress": MUTED}
# Above this many classes the confusion matrix drops per-cell numbers and thins its tick labels.
CELL_NUMBERS_UP_TO = 20
MAX_TICK_LABELS = 40
# A line per series up to this many; beyond, thin grey lines with the extremes highlighted.
LEGEND_UP_TO = 8
# Rule parameters drawn as threshold lines on their evidence series.
THRESHOLDS = {
    ("VanishingGradient", "mean_abs_gradient"): "threshold",
    ("Overfit", "gap_ratio"): "ratio_threshold",
    ("PoorWeightInitialization", "variance_ratio"): "threshold",
    ("PoorWeightInitialization", "min_gradient_spread"): "distribution_range",
}
STEP_AXIS = {
    "PoorWeightInitialization": "TRAIN step",
    "LossNotDecreasing": "step (rule's mode)",
    "Overfit": "global step",
}


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _number(value: Any) -> float | None:
    try:
        number = float(unquote(value))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ------------------------------------------------------------------------------------------------ tuning


def trial_objective(trial: dict[str, Any]) -> float | None:
    metric = trial.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return _number(metric.get("Value")) if metric else None


def tuning_objective_figure(
    trials: list[dict[str, Any]], objective_name: str, maximize: bool, best_name: str | None
) -> Figure:
    """Objective per trial in launch order, the best so far as a step line, the best trial starred."""
    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    best_so_far: list[float] = []
    positions: list[int] = []
    for index, trial in enumerate(trials, start=1):
        value = trial_objective(trial)
        status = trial.get("TrainingJobStatus", "?")
        if value is None:
            axes.axvline(index, color=TRIAL_COLOURS.get(status, MUTED), alpha=0.25, linewidth=3)
            continue
        axes.scatter(index, value, color=TRIAL_COLOURS.get(status, MUTED), zorder=3, s=30)
        previous = best_so_far[-1] if best_so_far else value
        best_so_far.append(max(previous, value) if maximize else min(previous, value))
        positions.append(index)
        if trial["TrainingJobName"] == best_name:
            axes.scatter(
                index, value, marker="*", s=320, color=BEST, edgecolor="black", zorder=4, label="best"
            )
    if best_so_far:
        axes.step(positions, best_so_far, where="post", color=GOOD, alpha=0.7, label="best so far")
    for status, colour in TRIAL_COLOURS.items():
        if any(t.get("TrainingJobStatus") == status for t in trials):
            axes.scatter([], [], color=colour, label=status)
    axes.set_xlabel("trial (launch order)")
    axes.set_ylabel(f"{objective_name} ({'maximize' if maximize else 'minimize'})")
    axes.set_title("Tuning: objective per trial (bands: trials without an objective)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def tuning_hyperparameters_figure(
    trials: list[dict[str, Any]],
    ranges: dict[str, dict[str, Any]],
    objective_name: str,
    best_name: str | None,
) -> Figure:
    """Objective against each tuned hyperparameter; log axes for log-scaled ranges, best trial starred."""
    names = list(ranges) or sorted({k for t in trials for k in t.get("TunedHyperParameters", {})})
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, name in zip(grid, names, strict=False):
        spec = ranges.get(name, {})
        categorical = spec.get("kind") == "categorical"
        categories = list(spec.get("values", []))
        for trial in trials:
            value, objective = trial.get("TunedHyperParameters", {}).get(name), trial_objective(trial)
            if value is None or objective is None:
                continue
            if categorical or _number(value) is None:
                text = unquote(value)
                if text not in categories:
                    categories.append(text)
                x: float = categories.index(text)
            else:
                x = float(_number(value))  # type: ignore[arg-type]
            is_best = trial["TrainingJobName"] == best_name
            axes.scatter(
                x,
                objective,
                marker="*" if is_best else "o",
                s=260 if is_best else 30,
                color=BEST if is_best else TRIAL_COLOURS.get(trial.get("TrainingJobStatus", ""), MUTED),
                edgecolor="black" if is_best else "none",
                zorder=4 if is_best else 3,
            )
        if categories and (categorical or not spec):
            axes.set_xticks(range(len(categories)), [_short(c, 12) for c in categories])
            axes.set_xlim(-0.5, len(categories) - 0.5)
        elif spec.get("scaling") in ("Logarithmic", "ReverseLogarithmic"):
            axes.set_xscale("log")
        scaling = f", {spec['scaling'].lower()} scale" if spec.get("scaling") not in (None, "Auto") else ""
        axes.set_xlabel(f"{name}{scaling}")
        axes.set_ylabel(objective_name)
        axes.set_title(f"{objective_name} vs {name}", fontsize=10)
        axes.grid(alpha=0.3)
    for axes in grid[len(names) :]:
        axes.set_axis_off()
    figure.suptitle("Tuning: objective per hyperparameter (★ best trial)")
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------------------------------ training


def training_curves_figure(epochs: list[dict[str, Any]]) -> Figure:
    """Train and valid loss, and accuracy, per epoch."""
    figure = Figure(figsize=(10, 3.8))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    x = [int(e["epoch"]) for e in epochs]
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for split, style in (("train", "-o"), ("valid", "-s")):
            values = [_number(e.get(f"{split}_{metric}")) for e in epochs]
            if any(v is not None for v in values):
                axes.plot(x, [np.nan if v is None else v for v in values], style, label=f"{split} {metric}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric.capitalize()} per epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------------------------------ rules


def _points(series: Any) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for point in series or []:
        if isinstance(point, (list, tuple)) and len(point) == 2:
            steps.append(float(point[0]))
            value = _number(point[1])
            values.append(np.nan if value is None else value)
    return steps, values


def rule_evidence_figure(verdict: dict[str, Any]) -> Figure | None:
    """One panel per evidence series; nested series (per layer) as one line each, thresholds dashed."""
    series: dict[str, Any] = (verdict.get("evidence") or {}).get("series") or {}
    panels = {k: v for k, v in series.items() if v}
    if not panels:
        return None
    name = str(verdict.get("name", "rule"))
    figure = Figure(figsize=(min(15, 5 * len(panels)), 3.6))
    grid = np.atleast_1d(figure.subplots(1, len(panels), squeeze=False)).ravel()
    for axes, (key, value) in zip(grid, panels.items(), strict=True):
        lines = value if isinstance(value, dict) else {key: value}
        plotted = {label: _points(points) for label, points in lines.items()}
        plotted = {label: xy for label, xy in plotted.items() if xy[0]}
        many = len(plotted) > LEGEND_UP_TO
        finals = {
            label: next((v for v in reversed(ys) if not np.isnan(v)), np.nan)
            for label, (_, ys) in plotted.items()
        }
        ranked = sorted(
            (label for label in finals if not np.isnan(finals[label])), key=lambda label: finals[label]
        )
        highlight = set(ranked[:2] + ranked[-1:]) if many else set(plotted)
        for label, (xs, ys) in plotted.items():
            if label in highlight:
                axes.plot(
                    xs, ys, marker="." if len(xs) < 30 else None, linewidth=1.4, label=_short(label, 40)
                )
            else:
                axes.plot(xs, ys, color=MUTED, linewidth=0.6, alpha=0.5)
        values = np.array([v for _, ys in plotted.values() for v in ys], dtype=float)
        finite = values[np.isfinite(values)]
        parameter = THRESHOLDS.get((name, key))
        threshold = _number((verdict.get("params") or {}).get(parameter)) if parameter else None
        if threshold is not None:
            axes.axhline(
                threshold, color=BAD, linestyle="--", linewidth=1, label=f"{parameter} = {threshold:g}"
            )
        positive = finite[finite > 0]
        if finite.size and positive.size == finite.size and positive.max() / positive.min() > 100:
            axes.set_yscale("log")
        axes.set_xlabel(STEP_AXIS.get(name, "global step"))
        axes.set_ylabel(key.replace("_", " "))
        title = key.replace("_", " ") + (f" ({len(plotted)} tensors; grey: the rest)" if many else "")
        axes.set_title(title, fontsize=9)
        axes.grid(alpha=0.3)
        if plotted or threshold is not None:
            axes.legend(fontsize=7)
    status = verdict.get("status", "?")
    figure.suptitle(f"{name}: {status}", color=BAD if status == "IssuesFound" else "black")
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------------------------------ profiler


def system_use_figure(samples: list[dict[str, Any]]) -> Figure:
    """CPU, memory and (when sampled) GPU use over the job's time."""
    has_gpu = any(s.get("gpus") for s in samples)
    figure = Figure(figsize=(12 if has_gpu else 10, 3.6))
    grid = figure.subplots(1, 3 if has_gpu else 2)
    cpu_axes, memory_axes = grid[0], grid[1]
    elapsed = [float(s.get("elapsed_s", i)) for i, s in enumerate(samples)]
    cpu_axes.plot(elapsed, [s.get("cpu_percent", np.nan) for s in samples], label="machine")
    cpu_axes.plot(elapsed, [s.get("process_cpu_percent", np.nan) for s in samples], label="training process")
    cpu_axes.set_xlabel("time since start (s)")
    cpu_axes.set_ylabel("CPU use (%; 100% = one core for the process)")
    cpu_axes.set_title("CPU")
    memory_axes.plot(elapsed, [s.get("process_rss_mb", np.nan) for s in samples], label="process RSS")
    memory_axes.plot(elapsed, [s.get("system_memory_used_mb", np.nan) for s in samples], label="machine used")
    memory_axes.set_xlabel("time since start (s)")
    memory_axes.set_ylabel("memory (MiB)")
    memory_axes.set_title("Memory")
    if has_gpu:
        gpu_axes = grid[2]
        count = max(len(s.get("gpus") or []) for s in samples)
        for index in range(count):
            util = [
                ((s.get("gpus") or [{}] * count)[index] or {}).get("utilization_percent", np.nan)
                for s in samples
            ]
            used = [
                ((s.get("gpus") or [{}] * count)[index] or {}).get("memory_allocated_mb", np.nan)
                for s in samples
            ]
            gpu_axes.plot(elapsed, util, label=f"GPU {index} utilization %")
            gpu_axes.plot(elapsed, used, linestyle="--", label=f"GPU {index} allocated MiB")
        gpu_axes.set_xlabel("time since start (s)")
        gpu_axes.set_ylabel("utilization (%) / memory (MiB)")
        gpu_axes.set_title("GPU")
    for axes in grid:
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle("Profiler: system use over time")
    figure.tight_layout()
    return figure


def phase_split_figure(phases: dict[str, dict[str, Any]], bottleneck: str | None) -> Figure:
    """Seconds per training phase, with each phase's share of the timed time."""
    order: list[str] = [p for p in ("data", "forward", "backward", "optimizer", "eval") if p in phases]
    order += [p for p in phases if p not in order]
    seconds = [float(phases[p].get("seconds", 0.0)) for p in order]
    total = sum(seconds) or 1.0
    figure = Figure(figsize=(8, 0.55 * len(order) + 1.6))
    axes = figure.subplots()
    colours = [BAD if p == bottleneck else "#1565c0" for p in order]
    axes.barh(order, seconds, color=colours)
    for y, value in enumerate(seconds):
        axes.text(value, y, f" {value:.2f} s ({value / total:.0%})", va="center", fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(seconds, default=1.0) * 1.3 or 1.0)
    axes.set_xlabel("seconds (summed over steps)")
    axes.set_ylabel("phase")
    axes.set_title("Profiler: where step time went" + (f" (bottleneck: {bottleneck})" if bottleneck else ""))
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------------------------------ evaluation


def recall_by_class(evaluation: dict[str, Any]) -> dict[str, float]:
    """Per-class accuracy (recall), in the evaluation's label order."""
    per_class = evaluation.get("per_class") or {}
    labels = evaluation.get("labels") or list(per_class)
    return {label: float((per_class.get(label) or {}).get("recall", 0.0)) for label in labels}


def per_class_accuracy_figure(evaluation: dict[str, Any], worst: int = 25) -> Figure:
    """Per-class accuracy bars, sorted; for many classes, all as thin bars plus the worst ones named."""
    recall = recall_by_class(evaluation)
    ordered = sorted(recall.items(), key=lambda item: (item[1], item[0]))
    overall = float(evaluation.get("accuracy", 0.0))
    if len(ordered) <= MAX_TICK_LABELS:
        figure = Figure(figsize=(8, 0.28 * len(ordered) + 1.6))
        axes = figure.subplots()
        axes.barh([_short(k, 30) for k, _ in ordered], [v for _, v in ordered], color=_bar_colours(ordered))
        axes.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
        axes.set_xlim(0, 1)
        axes.set_xlabel("accuracy (recall)")
        axes.set_ylabel("class")
        axes.set_title("Test accuracy per class (sorted)")
        axes.legend(fontsize=8, loc="lower right")
        figure.tight_layout()
        return figure
    figure = Figure(figsize=(12, 0.26 * min(worst, len(ordered)) + 2.0))
    all_axes, worst_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    all_axes.bar(range(len(ordered)), [v for _, v in ordered], width=1.0, color=_bar_colours(ordered))
    all_axes.axhline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
    all_axes.set_ylim(0, 1)
    all_axes.set_xlabel(f"class rank (all {len(ordered)} classes, worst first)")
    all_axes.set_ylabel("accuracy (recall)")
    all_axes.set_title("Every class, sorted")
    all_axes.legend(fontsize=8)
    shown = ordered[:worst]
    worst_axes.barh([_short(k, 32) for k, _ in shown], [v for _, v in shown], color=_bar_colours(shown))
    worst_axes.invert_yaxis()
    worst_axes.set_xlim(0, 1)
    worst_axes.set_xlabel("accuracy (recall)")
    worst_axes.set_ylabel("class")
    worst_axes.set_title(f"The {len(shown)} worst classes")
    worst_axes.tick_params(axis="y", labelsize=7)
    figure.suptitle("Test accuracy per class")
    figure.tight_layout()
    return figure


def _bar_colours(ordered: Sequence[tuple[str, float]]) -> list[str]:
    return [BAD if v < 0.5 else "#f57c00" if v < 0.8 else GOOD for _, v in ordered]


def confusion_order(matrix: np.ndarray) -> list[int]:
    """A class order that puts classes confused with each other side by side: spectral ordering (the
    Fiedler vector of the confusion graph's Laplacian), each connected group of confusions kept together.
    With no confusions at all, the label order."""
    count = matrix.shape[0]
    rows = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    affinity = rates + rates.T
    np.fill_diagonal(affinity, 0.0)
    if not affinity.any():
        return list(range(count))
    # Components first, so the eigenvector of one group never interleaves with another's.
    component = [-1] * count
    groups: list[list[int]] = []
    for start in range(count):
        if component[start] >= 0:
            continue
        stack, members = [start], []
        component[start] = len(groups)
        while stack:
            node = stack.pop()
            members.append(node)
            for other in np.nonzero(affinity[node])[0]:
                if component[other] < 0:
                    component[other] = len(groups)
                    stack.append(int(other))
        groups.append(sorted(members))
    order: list[int] = []
    # Largest confusion groups first; singletons (never confused) last, in label order.
    for members in sorted(groups, key=lambda g: (-len(g), g[0])):
        if len(members) <= 2:
            order.extend(members)
            continue
        block = affinity[np.ix_(members, members)]
        laplacian = np.diag(block.sum(axis=1)) - block
        _, vectors = np.linalg.eigh(laplacian)
        fiedler = vectors[:, 1]
        order.extend(members[i] for i in sorted(range(len(members)), key=lambda i: (fiedler[i], members[i])))
    return order


def confusion_matrix_figure(evaluation: dict[str, Any]) -> Figure:
    """Row-normalised confusion matrix: numbers in cells for few classes, clustered and thinned for many."""
    labels = list(evaluation.get("labels") or [])
    matrix = np.array(evaluation.get("confusion_matrix") or [], dtype=float)
    count = len(labels)
    many = count > CELL_NUMBERS_UP_TO
    order = confusion_order(matrix) if many else list(range(count))
    matrix = matrix[np.ix_(order, order)]
    labels = [labels[i] for i in order]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = min(16.0, max(5.0, 0.3 * count + 2.5))
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.subplots()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    step = max(1, math.ceil(count / MAX_TICK_LABELS))
    ticks = list(range(0, count, step))
    size = 8 if count <= MAX_TICK_LABELS else 6
    axes.set_xticks(ticks, [_short(labels[i], 18) for i in ticks], rotation=90, fontsize=size)
    axes.set_yticks(ticks, [_short(labels[i], 24) for i in ticks], fontsize=size)
    if not many:
        for (row, column), value in np.ndenumerate(normalised):
            if matrix[row, column]:
                colour = "white" if value > 0.5 else "black"
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    note = (
        f"; {count} classes, ordered so confused classes sit together, every {step}th label shown"
        if many and step > 1
        else "; ordered so confused classes sit together"
        if many
        else ""
    )
    axes.set_title(f"Confusion matrix (rows normalised{note})", fontsize=10)
    figure.tight_layout()
    return figure


def top_confusions(evaluation: dict[str, Any], limit: int = 15) -> list[tuple[str, str, int, float]]:
    """(true, predicted, count, share of the true class) for the most frequent off-diagonal cells."""
    labels = list(evaluation.get("labels") or [])
    matrix = evaluation.get("confusion_matrix") or []
    cells = []
    for row, counts in enumerate(matrix):
        total = sum(counts)
        for column, value in enumerate(counts):
            if row != column and value:
                cells.append((labels[row], labels[column], int(value), value / total if total else 0.0))
    return sorted(cells, key=lambda c: (-c[2], -c[3], c[0], c[1]))[:limit]


def sample_grid_figure(samples: list[Sample]) -> Figure:
    """Test images with the endpoint's top-1 answer: green frame right, red frame wrong."""
    from PIL import Image

    columns = min(4, len(samples))
    rows = math.ceil(len(samples) / columns)
    figure = Figure(figsize=(3.1 * columns, 3.5 * rows), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    right = sum(1 for s in samples if s.predicted == s.true_label)
    for axes, sample in zip(grid, samples, strict=False):
        try:
            with Image.open(io.BytesIO(sample.image)) as opened:
                axes.imshow(np.asarray(opened.convert("RGB")))
        except Exception as e:  # an image the endpoint may still judge; the grid shows why it cannot
            axes.text(0.5, 0.5, f"cannot show:\n{type(e).__name__}", ha="center", va="center")
        correct = sample.predicted == sample.true_label
        colour = GOOD if correct else BAD
        for spine in axes.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(4)
        axes.set_xticks([])
        axes.set_yticks([])
        mark = "✓" if correct else "✗"
        answer = (
            f"{_short(sample.predicted or '', 24)} ({sample.score:.2f})"
            if sample.predicted is not None and sample.score is not None
            else f"error: {_short(sample.error or '?', 24)}"
        )
        axes.set_title(f"{mark} pred: {answer}", fontsize=8, color=colour)
        axes.set_xlabel(f"true: {_short(sample.true_label, 28)}", fontsize=8)
        axes.set_ylabel("")
    for axes in grid[len(samples) :]:
        axes.set_axis_off()
    figure.suptitle(f"Sample predictions from the endpoint: {right}/{len(samples)} right")
    return figure
