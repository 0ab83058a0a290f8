"""Our implementation of six SageMaker Debugger built-in rules on smdebug's Rule API, and their verdicts."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from smdebug.core.modes import ModeKeys
    from smdebug.exceptions import TensorUnavailableForStep
    from smdebug.rules import Rule, invoke_rule
    from smdebug.trials import create_trial

    SMDEBUG_IMPORT_ERROR: str | None = None
except ImportError as e:  # rule jobs need smdebug; training does not, so importing this module must not fail
    SMDEBUG_IMPORT_ERROR = str(e)
    Rule = object

NO_ISSUES = "NoIssuesFound"
ISSUES = "IssuesFound"
ERROR = "Error"

ACTIVATION_VARIANCE_REGEX = "activation_input_variance/.*"
# A percentile spread estimated from a variance assumes a normal distribution: p95 - p5 = 2 * 1.645 sigma.
NORMAL_P5_P95_SIGMAS = 3.29
# Offending tensors listed in ExplodingTensor's evidence; the count is always complete.
MAX_LISTED = 50


# ---------------------------------------------------------------- pure decisions, unit-tested with numbers


def vanishing_layers(mean_abs_by_layer: dict[str, float], threshold: float) -> list[str]:
    """Layers whose mean absolute gradient is below `threshold` (VanishingGradient fires on any)."""
    return sorted(name for name, value in mean_abs_by_layer.items() if value < threshold)


def nonfinite_kind(values: Iterable[float | None], only_nan: bool) -> str | None:
    """'nan' or 'inf' when the statistics of a tensor show a non-finite value, else None."""
    finite = [v for v in values if v is not None]
    if any(math.isnan(v) for v in finite):
        return "nan"
    if not only_nan and any(math.isinf(v) for v in finite):
        return "inf"
    return None


def loss_check_points(steps: Sequence[int], num_steps: int) -> list[tuple[int, int]]:
    """(step, baseline step) pairs at which LossNotDecreasing compares losses.

    A check compares a step's loss with the newest saved step at least `num_steps` behind it; the next
    check is the first saved step at least `num_steps` after this one (the AWS docs' example: losses saved
    every 3 steps, num_steps 10: step 21 is compared with step 9, and the next check is step 33).
    """
    checks: list[tuple[int, int]] = []
    last_check: int | None = None
    for step in steps:
        if last_check is not None and step < last_check + num_steps:
            continue
        behind = [s for s in steps if s <= step - num_steps]
        if not behind:
            continue
        checks.append((step, behind[-1]))
        last_check = step
    return checks


def loss_decrease_percent(baseline: float, current: float) -> float:
    if baseline == 0:
        return 0.0 if current == 0 else -math.copysign(math.inf, current)
    return (baseline - current) / abs(baseline) * 100.0


def loss_not_decreasing(baseline: float, current: float, diff_percent: float) -> bool:
    """True when the loss fell by less than `diff_percent` percent (with 0: when it did not fall at all)."""
    if not math.isfinite(current):
        return True
    decrease = loss_decrease_percent(baseline, current)
    if diff_percent == 0:
        return current >= baseline
    return decrease < diff_percent


def overfit_ratio(mean_train_loss: float, mean_valid_loss: float) -> float:
    """(mean valid loss - mean train loss) / mean train loss, the AWS Overfit rule's ratio."""
    if mean_train_loss == 0:
        return math.inf if mean_valid_loss > 0 else 0.0
    return (mean_valid_loss - mean_train_loss) / mean_train_loss


def exceeded_for(values: Sequence[float], threshold: float, patience: int) -> int | None:
    """Index at which `values` has been above `threshold` for `patience` consecutive entries, else None."""
    run = 0
    for index, value in enumerate(values):
        run = run + 1 if value > threshold else 0
        if run >= patience:
            return index
    return None


def stalled_at(losses: Sequence[float], patience: int, delta: float) -> int | None:
    """Index at which the loss has gone `patience` values without beating its best by more than `delta`."""
    best = math.inf
    since = 0
    for index, loss in enumerate(losses):
        if loss < best - delta:
            best = loss
            since = 0
        else:
            since += 1
            if since >= patience:
                return index
    return None


def variance_ratio(variances: dict[str, float]) -> float:
    """max / min activation-input variance across layers (infinite when a layer has zero variance)."""
    values = [v for v in variances.values() if math.isfinite(v)]
    if len(values) < 2:
        return 1.0
    smallest, largest = min(values), max(values)
    if smallest <= 0:
        return math.inf if largest > 0 else 1.0
    return largest / smallest


def percentile_spread(std: float) -> float:
    """p95 - p5 of a distribution with this standard deviation, under a normal approximation."""
    return NORMAL_P5_P95_SIGMAS * std


# ---------------------------------------------------------------- reading the trial


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _scalar(value: Any) -> float:
    array = np.asarray(value, dtype=np.float64)
    return float(array.reshape(-1)[0]) if array.size == 1 else float(array.mean())


class _StepsCache:
    """Which global steps each tensor was saved at; smdebug recomputes this on every call otherwise."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self._steps: dict[str, set[int]] = {}

    def has(self, name: str, step: int) -> bool:
        if name not in self._steps:
            self._steps[name] = set(self.trial.tensor(name).steps())
        return step in self._steps[name]


class BuiltinRule(Rule):
    """A rule whose parameters and defaults follow the AWS built-in rule of the same name."""

    defaults: dict[str, Any] = {}

    def __init__(self, base_trial: Any, **params: Any) -> None:
        if SMDEBUG_IMPORT_ERROR is not None:
            raise RuntimeError(f"rule evaluation needs smdebug: {SMDEBUG_IMPORT_ERROR}")
        super().__init__(base_trial, action_str="")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown parameter(s) {unknown}; allowed: {sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}
        self.triggered_steps: list[int] = []
        self.steps_evaluated = 0
        self.cache = _StepsCache(base_trial)

    def invoke_at_step(self, step: int) -> bool:
        fired = bool(self.check(step))
        if fired:
            self.triggered_steps.append(step)
        return fired

    def check(self, step: int) -> bool:
        raise NotImplementedError

    def evidence(self) -> dict[str, Any]:
        return {}

    def not_evaluated_reason(self) -> str | None:
        """Why the rule could not look at anything; the AWS rules end such runs as NoIssuesFound."""
        return None if self.steps_evaluated else "no step had the tensors this rule needs"

    def report_params(self) -> dict[str, Any]:
        return dict(self.params)

    # helpers shared by the rules

    def _mode(self, step: int) -> Any:
        return self.base_trial.mode(step)

    def _loss_names(self, regex: Sequence[str] = (), collections: Sequence[str] = ()) -> list[str]:
        names: set[str] = set()
        for pattern in regex:
            names.update(self.base_trial.tensor_names(regex=pattern))
        for collection in collections:
            names.update(self.base_trial.tensor_names(collection=collection))
        if not regex and not collections:
            names.update(self.base_trial.tensor_names(collection="losses"))
        return sorted(names)

    def _value(self, name: str, step: int) -> float | None:
        if not self.cache.has(name, step):
            return None
        return _scalar(self.base_trial.tensor(name).value(step))

    def _reduction(self, name: str, step: int, reduction: str, absolute: bool = False) -> float | None:
        try:
            value = self.base_trial.tensor(name).reduction_value(step, reduction, abs=absolute)
        except TensorUnavailableForStep:
            return None
        return None if value is None else _scalar(value)


class VanishingGradient(BuiltinRule):
    """Fires at a step where any gradient's mean absolute value is below `threshold`."""

    defaults = {"threshold": 1e-7}

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        self.threshold = float(self.params["threshold"])
        self.gradients = base_trial.tensor_names(collection="gradients") or base_trial.tensor_names(
            regex="^gradient/"
        )
        self.series: dict[str, list[list[Any]]] = {name: [] for name in self.gradients}
        self.vanished: dict[int, list[str]] = {}

    def check(self, step: int) -> bool:
        means: dict[str, float] = {}
        for name in self.gradients:
            if not self.cache.has(name, step):
                continue
            value = self._reduction(name, step, "mean", absolute=True)
            if value is None:
                continue
            means[name] = value
            self.series[name].append([step, _finite_or_none(value)])
        if not means:
            return False
        self.steps_evaluated += 1
        layers = vanishing_layers(means, self.threshold)
        if layers:
            self.vanished[step] = layers
        return bool(layers)

    def evidence(self) -> dict[str, Any]:
        last = {name: points[-1][1] for name, points in self.series.items() if points}
        finite_last = {name: v for name, v in last.items() if v is not None}
        smallest = min(finite_last, key=lambda n: finite_last[n]) if finite_last else None
        first = self.triggered_steps[0] if self.triggered_steps else None
        return {
            "gradient_tensors": len(self.gradients),
            "first_step": first,
            "vanishing_layers": self.vanished.get(first, []) if first is not None else [],
            "smallest_mean_abs_gradient": finite_last.get(smallest) if smallest else None,
            "smallest_layer": smallest,
            "series": {"mean_abs_gradient": self.series},
        }


class ExplodingTensor(BuiltinRule):
    """Fires at a step where any inspected tensor holds NaN (or infinity, unless `only_nan`)."""

    defaults = {"collection_names": None, "tensor_regex": None, "only_nan": False}

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        self.only_nan = _as_bool(self.params["only_nan"])
        collections = _as_list(self.params["collection_names"])
        regex = _as_list(self.params["tensor_regex"])
        names: set[str] = set()
        for collection in collections:
            names.update(base_trial.tensor_names(collection=collection))
        for pattern in regex:
            names.update(base_trial.tensor_names(regex=pattern))
        self.tensors = sorted(names) if (collections or regex) else base_trial.tensor_names()
        self.losses = self._loss_names()
        self.offending: list[dict[str, Any]] = []
        self.offending_count = 0
        self.nonfinite_per_step: list[list[int]] = []
        self.loss_series: dict[str, list[list[Any]]] = {name: [] for name in self.losses}

    def check(self, step: int) -> bool:
        found = 0
        seen = False
        for name in self.tensors:
            if not self.cache.has(name, step):
                continue
            seen = True
            kind = nonfinite_kind(self._statistics(name, step), self.only_nan)
            if kind is None:
                continue
            found += 1
            self.offending_count += 1
            if len(self.offending) < MAX_LISTED:
                self.offending.append({"tensor": name, "step": step, "kind": kind})
        for name in self.losses:
            value = self._value(name, step)
            if value is not None:
                self.loss_series[name].append([step, _finite_or_none(value)])
        if seen:
            self.steps_evaluated += 1
            self.nonfinite_per_step.append([step, found])
        return found > 0

    def _statistics(self, name: str, step: int) -> list[float | None]:
        # A tensor saved as reductions only still shows NaN in its mean and infinity in its min or max.
        return [self._reduction(name, step, reduction) for reduction in ("mean", "min", "max")]

    def evidence(self) -> dict[str, Any]:
        return {
            "tensors_inspected": len(self.tensors),
            "first_step": self.triggered_steps[0] if self.triggered_steps else None,
            "nonfinite_tensor_steps": self.offending_count,
            "offending": self.offending,
            "series": {"nonfinite_tensors": self.nonfinite_per_step, "loss": self.loss_series},
        }


class _LossRule(BuiltinRule):
    """Shared bookkeeping of the loss per step, split by mode."""

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        regex = _as_list(self.params.get("tensor_regex"))
        collections = _as_list(self.params.get("collection_names"))
        self.loss_names = self._loss_names(regex, collections)
        self.loss_name = self.loss_names[0] if self.loss_names else None
        self.train: list[tuple[int, float]] = []
        self.valid: list[tuple[int, float]] = []

    def _record_loss(self, step: int) -> Any:
        if self.loss_name is None:
            return None
        value = self._value(self.loss_name, step)
        if value is None:
            return None
        mode = self._mode(step)
        if mode == ModeKeys.TRAIN:
            self.train.append((step, value))
        elif mode == ModeKeys.EVAL:
            self.valid.append((step, value))
        return mode

    def _loss_series(self) -> dict[str, list[list[Any]]]:
        return {
            "train_loss": [[s, _finite_or_none(v)] for s, v in self.train],
            "valid_loss": [[s, _finite_or_none(v)] for s, v in self.valid],
        }


class Overfit(_LossRule):
    """Fires when (mean valid - mean train) / mean train exceeds `ratio_threshold` for `patience` checks.

    A check happens at the end of each validation pass (a run of EVAL steps), comparing its mean loss with
    the mean loss of the training pass before it: one check per epoch.
    """

    defaults = {"tensor_regex": None, "start_step": 0, "patience": 1, "ratio_threshold": 0.1}

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        self.start_step = int(self.params["start_step"])
        self.patience = int(self.params["patience"])
        self.ratio_threshold = float(self.params["ratio_threshold"])
        self.last_step = max(base_trial.steps()) if base_trial.steps() else -1
        self.train_pass: list[float] = []
        self.valid_pass: list[float] = []
        self.previous_train_pass: list[float] = []
        self.checks: list[dict[str, Any]] = []
        self.run = 0

    def check(self, step: int) -> bool:
        if step < self.start_step:
            return False
        mode = self._record_loss(step)
        fired = False
        if mode == ModeKeys.TRAIN:
            if self.valid_pass:
                fired = self._close_validation_pass(step - 1)
                self.train_pass = []
            self.train_pass.append(self.train[-1][1])
        elif mode == ModeKeys.EVAL:
            if self.train_pass:
                self.previous_train_pass, self.train_pass = self.train_pass, []
            self.valid_pass.append(self.valid[-1][1])
        if step == self.last_step and self.valid_pass:
            fired = self._close_validation_pass(step) or fired
        return fired

    def _close_validation_pass(self, step: int) -> bool:
        valid, self.valid_pass = self.valid_pass, []
        if not self.previous_train_pass:
            return False
        self.steps_evaluated += 1
        mean_train = float(np.mean(self.previous_train_pass))
        mean_valid = float(np.mean(valid))
        ratio = overfit_ratio(mean_train, mean_valid)
        self.run = self.run + 1 if ratio > self.ratio_threshold else 0
        self.checks.append(
            {
                "step": step,
                "mean_train_loss": _finite_or_none(mean_train),
                "mean_valid_loss": _finite_or_none(mean_valid),
                "ratio": _finite_or_none(ratio),
            }
        )
        return self.run >= self.patience

    def not_evaluated_reason(self) -> str | None:
        if self.loss_name is None:
            return "no loss tensor in the trial"
        if not self.steps_evaluated:
            return "no validation pass after a training pass: the trial has no EVAL losses to compare"
        return None

    def evidence(self) -> dict[str, Any]:
        ratios = [c["ratio"] for c in self.checks if c["ratio"] is not None]
        return {
            "loss_tensor": self.loss_name,
            "first_step": self.triggered_steps[0] if self.triggered_steps else None,
            "max_ratio": max(ratios) if ratios else None,
            "last_ratio": self.checks[-1]["ratio"] if self.checks else None,
            "checks": self.checks,
            "series": {**self._loss_series(), "gap_ratio": [[c["step"], c["ratio"]] for c in self.checks]},
        }


class Overtraining(_LossRule):
    """Fires when the training loss has not improved by more than `delta` for `patience_train` saved
    TRAIN steps, or the validation loss for `patience_validation` saved EVAL steps."""

    defaults = {"patience_train": 5, "patience_validation": 10, "delta": 0.1}

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        self.patience_train = int(self.params["patience_train"])
        self.patience_validation = int(self.params["patience_validation"])
        self.delta = float(self.params["delta"])
        self.stalled: dict[str, int] = {}

    def check(self, step: int) -> bool:
        mode = self._record_loss(step)
        if mode is None:
            return False
        self.steps_evaluated += 1
        fired = False
        for which, losses, patience in (
            ("train", self.train, self.patience_train),
            ("validation", self.valid, self.patience_validation),
        ):
            index = stalled_at([v for _, v in losses], patience, self.delta)
            if index is not None and index == len(losses) - 1 and losses[-1][0] == step:
                self.stalled.setdefault(which, step)
                fired = True
        return fired

    def not_evaluated_reason(self) -> str | None:
        return "no loss tensor in the trial" if self.loss_name is None else super().not_evaluated_reason()

    def evidence(self) -> dict[str, Any]:
        def best(losses: list[tuple[int, float]]) -> float | None:
            finite = [v for _, v in losses if math.isfinite(v)]
            return min(finite) if finite else None

        return {
            "loss_tensor": self.loss_name,
            "first_step": self.triggered_steps[0] if self.triggered_steps else None,
            "stalled_since": self.stalled,
            "best_train_loss": best(self.train),
            "best_valid_loss": best(self.valid),
            "series": self._loss_series(),
        }


class LossNotDecreasing(_LossRule):
    """Fires when a loss has not fallen by `diff_percent` percent against the step `num_steps` behind."""

    defaults = {
        "collection_names": None,
        "tensor_regex": None,
        "use_losses_collection": True,
        "num_steps": 10,
        "diff_percent": 0.0,
        # AWS's rule searches EVAL, then TRAIN, then GLOBAL when mode is None; the SDK's
        # rule_configs.loss_not_decreasing() passes TRAIN, which is what a managed job actually ran.
        "mode": "TRAIN",
    }

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        self.num_steps = int(self.params["num_steps"])
        self.diff_percent = float(self.params["diff_percent"])
        regex = _as_list(self.params["tensor_regex"])
        collections = _as_list(self.params["collection_names"])
        if _as_bool(self.params["use_losses_collection"]) and "losses" not in collections:
            collections.append("losses")
        self.loss_names = self._loss_names(regex, collections)
        self.mode = self._choose_mode(self.params["mode"])
        self.series: dict[str, list[list[Any]]] = {name: [] for name in self.loss_names}
        self.checks: list[dict[str, Any]] = []
        self._planned: dict[str, dict[int, int]] = {}
        for name in self.loss_names:
            mode_steps = self._mode_steps(name)
            self._planned[name] = dict(loss_check_points(mode_steps, self.num_steps))

    def _choose_mode(self, requested: Any) -> Any:
        order = [ModeKeys.EVAL, ModeKeys.TRAIN, ModeKeys.GLOBAL]
        if requested not in (None, "", "None"):
            name = str(requested).upper()
            if name not in ModeKeys.__members__:
                raise ValueError(f"mode must be one of EVAL, TRAIN, GLOBAL, got {requested!r}")
            return ModeKeys[name]
        for mode in order:
            if any(self.base_trial.tensor(n).steps(mode=mode) for n in self.loss_names):
                return mode
        return ModeKeys.GLOBAL

    def _mode_steps(self, name: str) -> list[int]:
        return list(self.base_trial.tensor(name).steps(mode=self.mode))

    def _step_in_mode(self, step: int) -> int | None:
        if self.mode == ModeKeys.GLOBAL:
            return step
        if self._mode(step) != self.mode:
            return None
        return self.base_trial.mode_step(step)

    def check(self, step: int) -> bool:
        mode_step = self._step_in_mode(step)
        if mode_step is None:
            return False
        fired = False
        for name in self.loss_names:
            value = self._value(name, step)
            if value is None:
                continue
            self.series[name].append([mode_step, _finite_or_none(value)])
            baseline_step = self._planned[name].get(mode_step)
            if baseline_step is None:
                continue
            baseline = dict((s, v) for s, v in self.series[name]).get(baseline_step)
            if baseline is None:
                continue
            self.steps_evaluated += 1
            not_falling = loss_not_decreasing(baseline, value, self.diff_percent)
            self.checks.append(
                {
                    "tensor": name,
                    "step": mode_step,
                    "baseline_step": baseline_step,
                    "loss": _finite_or_none(value),
                    "baseline_loss": baseline,
                    "decrease_percent": _finite_or_none(loss_decrease_percent(baseline, value)),
                    "not_decreasing": not_falling,
                }
            )
            fired = fired or not_falling
        return fired

    def not_evaluated_reason(self) -> str | None:
        if not self.loss_names:
            return "no loss tensor in the trial"
        if not self.steps_evaluated:
            longest = max(len(points) for points in self.series.values())
            return (
                f"not enough {self.mode.name} steps: a check needs a loss at least num_steps="
                f"{self.num_steps} steps behind, and the trial has {longest} saved loss values"
            )
        return None

    def report_params(self) -> dict[str, Any]:
        return {**self.params, "mode": self.mode.name}

    def evidence(self) -> dict[str, Any]:
        failed = [c for c in self.checks if c["not_decreasing"]]
        return {
            "mode": self.mode.name,
            "loss_tensors": self.loss_names,
            "first_step": failed[0]["step"] if failed else None,
            "checks": self.checks,
            "series": {"loss": self.series},
        }


class PoorWeightInitialization(BuiltinRule):
    """Over the first `steps` TRAIN steps, fires when any of the three AWS checks does.

    - max/min activation-input variance across layers > `threshold` at a step;
    - the smallest 5th-95th percentile spread of a layer's gradients < `distribution_range`;
    - the loss set no new minimum for `patience` steps.
    """

    defaults = {
        "activation_inputs_regex": ACTIVATION_VARIANCE_REGEX,
        "threshold": 10.0,
        "distribution_range": 0.001,
        "patience": 5,
        "steps": 10,
    }

    def __init__(self, base_trial: Any, **params: Any) -> None:
        super().__init__(base_trial, **params)
        self.threshold = float(self.params["threshold"])
        self.distribution_range = float(self.params["distribution_range"])
        self.patience = int(self.params["patience"])
        self.steps = int(float(self.params["steps"]))
        names: set[str] = set()
        for pattern in _as_list(self.params["activation_inputs_regex"]):
            names.update(base_trial.tensor_names(regex=pattern))
        self.activations = sorted(names)
        self.gradients = base_trial.tensor_names(collection="gradients")
        self.loss_name = (base_trial.tensor_names(collection="losses") or [None])[0]
        self.variance_series: dict[str, list[list[Any]]] = {name: [] for name in self.activations}
        self.ratio_series: list[list[Any]] = []
        self.spread_series: list[list[Any]] = []
        self.losses: list[list[Any]] = []
        self.reasons: dict[str, int] = {}

    def check(self, step: int) -> bool:
        if self._mode(step) != ModeKeys.TRAIN:
            return False
        mode_step = self.base_trial.mode_step(step)
        if mode_step >= self.steps:
            return False
        looked = False
        fired = False

        variances = {}
        for name in self.activations:
            if self.cache.has(name, step):
                variances[name] = self._activation_variance(name, step)
                self.variance_series[name].append([mode_step, _finite_or_none(variances[name])])
        if len(variances) >= 2:
            looked = True
            ratio = variance_ratio(variances)
            self.ratio_series.append([mode_step, _finite_or_none(ratio)])
            if ratio > self.threshold:
                fired = self._fire("activation_variance_ratio", mode_step)

        spreads = {}
        for name in self.gradients:
            if self.cache.has(name, step):
                variance = self._reduction(name, step, "variance")
                if variance is not None and math.isfinite(variance):
                    spreads[name] = percentile_spread(math.sqrt(max(variance, 0.0)))
        if spreads:
            looked = True
            smallest = min(spreads.values())
            self.spread_series.append([mode_step, smallest])
            if smallest < self.distribution_range:
                fired = self._fire("gradient_distribution", mode_step) or fired

        if self.loss_name is not None and self.cache.has(self.loss_name, step):
            looked = True
            self.losses.append([mode_step, _scalar(self.base_trial.tensor(self.loss_name).value(step))])
            index = stalled_at([v for _, v in self.losses], self.patience, 0.0)
            if index is not None:
                fired = self._fire("loss_not_decreasing", mode_step) or fired

        if looked:
            self.steps_evaluated += 1
        return fired

    def _fire(self, reason: str, mode_step: int) -> bool:
        self.reasons.setdefault(reason, mode_step)
        return True

    def _activation_variance(self, name: str, step: int) -> float:
        value = np.asarray(self.base_trial.tensor(name).value(step), dtype=np.float64)
        # Our hook stores the variance itself; a full activation tensor (AWS's relu_input) is reduced here.
        return float(value.reshape(-1)[0]) if value.size == 1 else float(value.var())

    def evidence(self) -> dict[str, Any]:
        ratios = [r for _, r in self.ratio_series if r is not None]
        return {
            "first_step": min(self.reasons.values()) if self.reasons else None,
            "reasons": self.reasons,
            "activation_layers": len(self.activations),
            "max_variance_ratio": max(ratios) if ratios else (math.inf if self.ratio_series else None),
            "min_gradient_spread": min((s for _, s in self.spread_series), default=None),
            "series": {
                "activation_variance": self.variance_series,
                "variance_ratio": self.ratio_series,
                "min_gradient_spread": self.spread_series,
                "loss": self.losses,
            },
        }


RULES: dict[str, type[BuiltinRule]] = {
    cls.__name__: cls
    for cls in (
        VanishingGradient,
        ExplodingTensor,
        Overfit,
        Overtraining,
        PoorWeightInitialization,
        LossNotDecreasing,
    )
}

_MESSAGES = {
    "VanishingGradient": "gradients vanished: mean |gradient| below {threshold} in {layers}",
    "ExplodingTensor": "non-finite values ({kinds}) in {count} tensor(s), first at step {step}",
    "Overfit": "validation loss exceeds training loss by more than {ratio_threshold:.0%} (ratio {ratio})",
    "Overtraining": "loss stopped improving by more than {delta}: {which}",
    "PoorWeightInitialization": "poor initialization signs in the first {steps} steps: {reasons}",
    "LossNotDecreasing": "loss did not fall by more than {diff_percent}% over {num_steps} {mode} steps",
}


def _issue_message(rule: BuiltinRule, evidence: dict[str, Any]) -> str:
    name = type(rule).__name__
    fields: dict[str, Any] = {**rule.report_params()}
    if name == "VanishingGradient":
        fields["layers"] = ", ".join(evidence["vanishing_layers"][:5]) or "?"
    elif name == "ExplodingTensor":
        fields["kinds"] = "/".join(sorted({o["kind"] for o in evidence["offending"]}))
        fields["count"] = evidence["nonfinite_tensor_steps"]
        fields["step"] = evidence["first_step"]
    elif name == "Overfit":
        fields["ratio"] = evidence["max_ratio"]
        fields["ratio_threshold"] = float(fields["ratio_threshold"])
    elif name == "Overtraining":
        fields["which"] = ", ".join(f"{k} loss since step {v}" for k, v in evidence["stalled_since"].items())
    elif name == "PoorWeightInitialization":
        fields["reasons"] = ", ".join(evidence["reasons"])
    return _MESSAGES[name].format(**fields)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def run_rule(trial: Any, rule_cls: type[BuiltinRule], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One verdict; a rule that raises becomes status Error with the message, never a crash."""
    name = rule_cls.__name__
    reported = {**rule_cls.defaults, **(params or {})}
    try:
        rule = rule_cls(trial, **(params or {}))
        reported = rule.report_params()
        steps = trial.steps()
        if steps:
            # end_step bounds the walk: smdebug would otherwise wait for steps a live job has yet to write.
            invoke_rule(rule, start_step=min(steps), end_step=max(steps) + 1, raise_eval_cond=False)
        evidence = rule.evidence()
        evidence["steps_evaluated"] = rule.steps_evaluated
        if rule.triggered_steps:
            status, message = ISSUES, _issue_message(rule, evidence)
        else:
            reason = rule.not_evaluated_reason()
            status = NO_ISSUES
            message = f"not evaluated: {reason}" if reason else "no issues found"
            evidence["evaluated"] = reason is None
    except Exception as e:  # one broken rule must not hide the others' verdicts
        return {
            "name": name,
            "status": ERROR,
            "params": _json_safe(reported),
            "evidence": {},
            "message": f"{type(e).__name__}: {e}",
        }
    return {
        "name": name,
        "status": status,
        "params": _json_safe(reported),
        "evidence": _json_safe(evidence),
        "message": message,
    }


def evaluate_trial(trial_dir: str, out_path: str, params: dict[str, dict] | None = None) -> dict:
    """Run every rule on the smdebug trial in `trial_dir`, write `verdicts.json` to `out_path`, return it."""
    params = params or {}
    unknown = sorted(set(params) - set(RULES))
    verdicts: list[dict[str, Any]] = []
    trial: Any = None
    problem: str | None = None
    if SMDEBUG_IMPORT_ERROR is not None:
        problem = f"smdebug cannot be imported: {SMDEBUG_IMPORT_ERROR}"
    elif not Path(trial_dir).is_dir():
        problem = f"no trial at {trial_dir}"
    else:
        try:
            trial = create_trial(trial_dir)
            trial.steps()
        except Exception as e:
            problem = f"cannot read the trial at {trial_dir}: {type(e).__name__}: {e}"
    for name, rule_cls in RULES.items():
        if problem is not None:
            verdicts.append(
                {
                    "name": name,
                    "status": ERROR,
                    "params": _json_safe({**rule_cls.defaults, **params.get(name, {})}),
                    "evidence": {},
                    "message": problem,
                }
            )
        else:
            verdicts.append(run_rule(trial, rule_cls, params.get(name)))
    result: dict[str, Any] = {
        "rules": verdicts,
        "issues_found": any(v["status"] == ISSUES for v in verdicts),
        "trial_dir": str(trial_dir),
        "training_complete": bool(trial is not None and trial.loaded_all_steps),
    }
    if unknown:
        result["ignored_params"] = unknown
    out = Path(out_path)
    if out.suffix != ".json":
        out = out / "verdicts.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate the built-in rules on an smdebug trial.")
    parser.add_argument("trial_dir")
    parser.add_argument("out_path", help="verdicts.json, or a folder to write it in")
    parser.add_argument("--params", default=None, help='JSON: {"RuleName": {"param": value}}')
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params) if args.params else None
    except json.JSONDecodeError as e:
        parser.error(f"--params is not JSON: {e}")
    if params is not None and not isinstance(params, dict):
        parser.error("--params must be a JSON object keyed by rule name")
    result = evaluate_trial(args.trial_dir, args.out_path, params)
    for verdict in result["rules"]:
        print(f"{verdict['name']}: {verdict['status']} - {verdict['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
