"""Hyperparameter tuning jobs: Grid, Random, Bayesian (TPE) and Hyperband over local training jobs."""

from __future__ import annotations

import itertools
import math
import random
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from stepsage.local.sagemaker.context import EmulatorContext, now
from stepsage.local.sagemaker.training import TrainingJob
from stepsage.local.sagemaker.validation import HYPERBAND_EPOCH_KEYS

# Median stopping needs some finished jobs to compare with; AWS does not publish its minimum.
MEDIAN_STOPPING_MIN_JOBS = 2
HYPERBAND_REDUCTION_FACTOR = 3

optuna.logging.set_verbosity(optuna.logging.WARNING)

TrialLauncher = Callable[..., TrainingJob]


# ---- pure decisions ---------------------------------------------------------------------------------


def trial_job_name(tuning_job_name: str, index: int, token: str | None = None) -> str:
    """`<tuning-job>-<NNN>-<8 hex>`, as SageMaker names a tuning job's training jobs."""
    return f"{tuning_job_name}-{index:03d}-{token or secrets.token_hex(4)}"


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def grid_combinations(ranges: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of the categorical values, first range varying slowest."""
    categorical = ranges.get("CategoricalParameterRanges") or []
    names = [item["Name"] for item in categorical]
    value_lists = [_unique(item["Values"]) for item in categorical]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*value_lists)]


def format_integer(value: float) -> str:
    return str(round(value))


def format_continuous(value: float) -> str:
    return repr(float(value))


def sample_random(ranges: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """One Random-search draw, honouring each range's ScalingType (Auto is linear for Random)."""
    values: dict[str, str] = {}
    for item in ranges.get("IntegerParameterRanges") or []:
        int_low, int_high = int(float(item["MinValue"])), int(float(item["MaxValue"]))
        if item.get("ScalingType") == "Logarithmic":
            drawn_integer = math.floor(math.exp(rng.uniform(math.log(int_low), math.log(int_high + 1))))
            values[item["Name"]] = format_integer(min(int_high, max(int_low, drawn_integer)))
        else:
            values[item["Name"]] = str(rng.randint(int_low, int_high))
    for item in ranges.get("ContinuousParameterRanges") or []:
        low, high = float(item["MinValue"]), float(item["MaxValue"])
        scaling = item.get("ScalingType", "Auto")
        if scaling == "Logarithmic":
            drawn = math.exp(rng.uniform(math.log(low), math.log(high)))
        elif scaling == "ReverseLogarithmic":
            drawn = 1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low)))
        else:
            drawn = rng.uniform(low, high)
        values[item["Name"]] = format_continuous(min(high, max(low, drawn)))
    for item in ranges.get("CategoricalParameterRanges") or []:
        values[item["Name"]] = rng.choice(_unique(item["Values"]))
    return values


_REVERSE_PREFIX = "__one_minus__"


def search_space(ranges: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions for the ranges; ReverseLogarithmic x is searched as log-scaled 1 - x."""
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for item in ranges.get("IntegerParameterRanges") or []:
        space[item["Name"]] = optuna.distributions.IntDistribution(
            int(float(item["MinValue"])),
            int(float(item["MaxValue"])),
            log=item.get("ScalingType") == "Logarithmic",
        )
    for item in ranges.get("ContinuousParameterRanges") or []:
        low, high = float(item["MinValue"]), float(item["MaxValue"])
        scaling = item.get("ScalingType", "Auto")
        if scaling == "ReverseLogarithmic":
            space[_REVERSE_PREFIX + item["Name"]] = optuna.distributions.FloatDistribution(
                1 - high, 1 - low, log=True
            )
        else:
            space[item["Name"]] = optuna.distributions.FloatDistribution(
                low, high, log=scaling == "Logarithmic"
            )
    for item in ranges.get("CategoricalParameterRanges") or []:
        space[item["Name"]] = optuna.distributions.CategoricalDistribution(_unique(item["Values"]))
    return space


def hyperparameters_from_optuna(params: dict[str, Any], ranges: dict[str, Any]) -> dict[str, str]:
    integer_names = {item["Name"] for item in ranges.get("IntegerParameterRanges") or []}
    values: dict[str, str] = {}
    for name, value in params.items():
        if name.startswith(_REVERSE_PREFIX):
            values[name[len(_REVERSE_PREFIX) :]] = format_continuous(1 - value)
        elif name in integer_names:
            values[name] = format_integer(value)
        elif isinstance(value, float):
            values[name] = format_continuous(value)
        else:
            values[name] = str(value)
    return values


def median_stopping_decision(
    history: list[float],
    finished_histories: list[list[float]],
    maximize: bool,
    min_jobs: int = MEDIAN_STOPPING_MIN_JOBS,
) -> bool:
    """AWS's Auto early stopping: stop when the latest objective is worse than the median of the finished
    jobs' running averages up to the same step."""
    step = len(history)
    if step == 0:
        return False
    averages = [statistics.fmean(h[:step]) for h in finished_histories if len(h) >= step]
    if len(averages) < min_jobs:
        return False
    median = statistics.median(averages)
    return history[-1] < median if maximize else history[-1] > median


def objective_status(job_status: str, objective_value: float | None) -> str:
    if objective_value is not None and job_status != "InProgress":
        return "Succeeded"
    if job_status in ("InProgress", "Stopping"):
        return "Pending"
    return "Failed"


def status_counters(trials: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """TrainingJobStatusCounters and ObjectiveStatusCounters over trial summaries."""
    jobs = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
    objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    for trial in trials:
        status = trial["TrainingJobStatus"]
        if status in ("InProgress", "Stopping"):
            jobs["InProgress"] += 1
        elif status == "Failed":
            jobs["NonRetryableError"] += 1
        else:
            jobs[status] += 1
        objectives[trial["ObjectiveStatus"]] += 1
    return jobs, objectives


def best_trial(trials: list[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    """The best completed trial by final objective (stopped trials count only if nothing completed)."""
    scored = [t for t in trials if t["ObjectiveStatus"] == "Succeeded"]
    completed = [t for t in scored if t["TrainingJobStatus"] == "Completed"] or scored
    if not completed:
        return None

    def key(trial: dict[str, Any]) -> tuple[float, float]:
        value = trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        # Earlier jobs win ties, as they were found first.
        return (value if maximize else -value, -trial["CreationTime"].timestamp())

    return max(completed, key=key)


def sort_trials(trials: list[dict[str, Any]], sort_by: str, order: str) -> list[dict[str, Any]]:
    """ListTrainingJobsForHyperParameterTuningJob's ordering; trials without an objective go last."""
    descending = order == "Descending"
    if sort_by == "FinalObjectiveMetricValue":
        scored = [t for t in trials if "FinalHyperParameterTuningJobObjectiveMetric" in t]
        unscored = [t for t in trials if "FinalHyperParameterTuningJobObjectiveMetric" not in t]
        scored.sort(
            key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], reverse=descending
        )
        return scored + sorted(unscored, key=lambda t: t["TrainingJobName"])
    field = {"Name": "TrainingJobName", "CreationTime": "CreationTime", "Status": "TrainingJobStatus"}[
        sort_by
    ]
    return sorted(trials, key=lambda t: t[field], reverse=descending)


def hyperband_max_resource(config: dict[str, Any], static: dict[str, str]) -> int:
    hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
    if "MaxResource" in hyperband:
        return int(hyperband["MaxResource"])
    for key in HYPERBAND_EPOCH_KEYS:
        if key in static:
            return int(float(static[key]))
    raise ValueError("Hyperband MaxResource cannot be inferred")


# ---- the tuning job ---------------------------------------------------------------------------------


class _Trial:
    def __init__(
        self, job: TrainingJob, tuned: dict[str, str], optuna_trial: optuna.trial.Trial | None
    ) -> None:
        self.job = job
        self.tuned = tuned
        self.optuna_trial = optuna_trial
        self.pruned = False


class TuningJob:
    """One tuning job: suggests hyperparameters, launches trials, stops the weak ones, picks the best."""

    def __init__(
        self, context: EmulatorContext, request: dict[str, Any], launch_trial: TrialLauncher
    ) -> None:
        self.context = context
        self.request = request
        self.name: str = request["HyperParameterTuningJobName"]
        self.arn = context.arn("hyper-parameter-tuning-job", self.name)
        self.config: dict[str, Any] = request["HyperParameterTuningJobConfig"]
        self.definition: dict[str, Any] = (
            request.get("TrainingJobDefinition") or request["TrainingJobDefinitions"][0]
        )
        self.strategy: str = self.config["Strategy"]
        objective = self.definition.get("TuningObjective") or self.config["HyperParameterTuningJobObjective"]
        self.objective_metric: str = objective["MetricName"]
        self.objective_type: str = objective["Type"]
        self.maximize = self.objective_type == "Maximize"
        self.ranges: dict[str, Any] = (
            self.definition.get("HyperParameterRanges") or self.config.get("ParameterRanges") or {}
        )
        limits = self.config["ResourceLimits"]
        if self.strategy == "Grid":
            self.max_jobs = len(grid_combinations(self.ranges))
        else:
            self.max_jobs = int(limits["MaxNumberOfTrainingJobs"])
        # The machine bounds parallelism: more concurrent jobs than cores only slows every one of them.
        self.parallel = max(1, min(int(limits["MaxParallelTrainingJobs"]), context.cores, self.max_jobs))
        self.max_runtime: float | None = limits.get("MaxRuntimeInSeconds")
        self.early_stopping = self.config.get("TrainingJobEarlyStoppingType", "Off") == "Auto"
        self.max_resource = (
            hyperband_max_resource(self.config, self.definition.get("StaticHyperParameters") or {})
            if self.strategy == "Hyperband"
            else 0
        )
        self._launch_trial = launch_trial
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stop_requested = False
        self.trials: list[_Trial] = []
        self.status = "InProgress"
        self.failure_reason: str | None = None
        self.creation_time = now()
        self.last_modified_time = self.creation_time
        self.end_time: Any = None
        self.jobs_not_improving = 0
        self._study = self._make_study()
        self._thread = threading.Thread(target=self._run, name=f"tuning-{self.name}", daemon=True)

    def _make_study(self) -> optuna.Study | None:
        seed = self.config.get("RandomSeed")
        direction = (
            optuna.study.StudyDirection.MAXIMIZE if self.maximize else optuna.study.StudyDirection.MINIMIZE
        )
        if self.strategy == "Bayesian":
            startup = max(2, min(10, self.max_jobs // 3))
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
            return optuna.create_study(study_name=self.name, direction=direction, sampler=sampler)
        if self.strategy == "Hyperband":
            hyperband = (self.config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
            static = self.definition.get("StaticHyperParameters") or {}
            pruner = optuna.pruners.HyperbandPruner(
                min_resource=int(hyperband.get("MinResource", 1)),
                max_resource=hyperband_max_resource(self.config, static),
                reduction_factor=HYPERBAND_REDUCTION_FACTOR,
            )
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=max(2, min(10, self.max_jobs // 3))
            )
            return optuna.create_study(
                study_name=self.name, direction=direction, sampler=sampler, pruner=pruner
            )
        return None

    # ---- public surface -------------------------------------------------------------------------

    def start(self) -> None:
        self.context.emit("TuningJobStatus", tuning_job=self.name, status=self.status)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if self.status != "InProgress":
                return
            self._stop_requested = True
            self._set_status("Stopping")
            self._wake.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def trial_summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            trials = list(self.trials)
        return [self._trial_summary(t) for t in trials]

    def describe(self) -> dict[str, Any]:
        summaries = self.trial_summaries()
        jobs, objectives = status_counters(summaries)
        with self._lock:
            out: dict[str, Any] = {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "HyperParameterTuningJobConfig": self.config,
                "HyperParameterTuningJobStatus": self.status,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatusCounters": jobs,
                "ObjectiveStatusCounters": objectives,
                "TuningJobCompletionDetails": {
                    "NumberOfTrainingJobsObjectiveNotImproving": self.jobs_not_improving
                },
            }
            for key in ("TrainingJobDefinition", "TrainingJobDefinitions", "WarmStartConfig", "Autotune"):
                if key in self.request:
                    out[key] = self.request[key]
            if self.end_time:
                out["HyperParameterTuningEndTime"] = self.end_time
            out["ConsumedResources"] = {
                "RuntimeInSeconds": int(((self.end_time or now()) - self.creation_time).total_seconds())
            }
            if self.failure_reason:
                out["FailureReason"] = self.failure_reason
        best = best_trial(summaries, self.maximize)
        if best is not None:
            out["BestTrainingJob"] = best
        return out

    def summary(self) -> dict[str, Any]:
        described = self.describe()
        out = {
            key: described[key]
            for key in (
                "HyperParameterTuningJobName",
                "HyperParameterTuningJobArn",
                "HyperParameterTuningJobStatus",
                "CreationTime",
                "LastModifiedTime",
                "TrainingJobStatusCounters",
                "ObjectiveStatusCounters",
            )
        }
        out["Strategy"] = self.strategy
        out["ResourceLimits"] = self.config["ResourceLimits"]
        if "HyperParameterTuningEndTime" in described:
            out["HyperParameterTuningEndTime"] = described["HyperParameterTuningEndTime"]
        return out

    def _trial_summary(self, trial: _Trial) -> dict[str, Any]:
        described = trial.job.describe()
        value = trial.job.final_metric(self.objective_metric)
        status = described["TrainingJobStatus"]
        out: dict[str, Any] = {
            "TrainingJobName": trial.job.name,
            "TrainingJobArn": trial.job.arn,
            "TuningJobName": self.name,
            "CreationTime": described["CreationTime"],
            "TrainingJobStatus": status,
            "TunedHyperParameters": dict(trial.tuned),
            "ObjectiveStatus": objective_status(status, value),
        }
        if "DefinitionName" in self.definition:
            out["TrainingJobDefinitionName"] = self.definition["DefinitionName"]
        for source, target in (
            ("TrainingStartTime", "TrainingStartTime"),
            ("TrainingEndTime", "TrainingEndTime"),
            ("FailureReason", "FailureReason"),
        ):
            if source in described:
                out[target] = described[source]
        if value is not None and status != "InProgress":
            out["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": self.objective_type,
                "MetricName": self.objective_metric,
                "Value": value,
            }
        return out

    # ---- the run --------------------------------------------------------------------------------

    def _set_status(self, status: str, reason: str | None = None) -> None:
        with self._lock:
            self.status = status
            self.last_modified_time = now()
            if reason:
                self.failure_reason = reason
            if status in ("Completed", "Failed", "Stopped"):
                self.end_time = self.last_modified_time
        self.context.emit("TuningJobStatus", tuning_job=self.name, status=status, failure_reason=reason)

    def _suggestions(self) -> Iterator[tuple[dict[str, str], optuna.trial.Trial | None]]:
        if self.strategy == "Grid":
            for combo in grid_combinations(self.ranges):
                yield combo, None
            return
        if self.strategy == "Random":
            rng = random.Random(self.config.get("RandomSeed"))
            while True:
                yield sample_random(self.ranges, rng), None
        assert self._study is not None
        space = search_space(self.ranges)
        while True:
            with self._lock:
                trial = self._study.ask(space)
            yield hyperparameters_from_optuna(trial.params, self.ranges), trial

    def _deadline_passed(self) -> bool:
        return (
            self.max_runtime is not None and (now() - self.creation_time).total_seconds() > self.max_runtime
        )

    def _running(self) -> int:
        return sum(1 for t in self.trials if not t.job.finished)

    def _run(self) -> None:
        try:
            self._launch_all()
            self._wait_for_trials()
            self._conclude()
        except Exception as e:  # an emulator bug must still end the tuning job
            for trial in list(self.trials):
                trial.job.stop()
            self._set_status("Failed", f"InternalServerError: {e}")

    def _launch_all(self) -> None:
        suggestions = self._suggestions()
        for index in range(1, self.max_jobs + 1):
            with self._lock:
                while self._running() >= self.parallel and not self._stop_requested:
                    self._wake.wait(0.5)
                    if self._deadline_passed():
                        self._stop_requested = True
                if self._stop_requested or self._criteria_met():
                    return
            tuned, optuna_trial = next(suggestions)
            self._launch(index, tuned, optuna_trial)

    def _launch(self, index: int, tuned: dict[str, str], optuna_trial: optuna.trial.Trial | None) -> None:
        definition = self.definition
        name = trial_job_name(self.name, index)
        request: dict[str, Any] = {
            "TrainingJobName": name,
            "AlgorithmSpecification": definition["AlgorithmSpecification"],
            "RoleArn": definition["RoleArn"],
            "HyperParameters": {**(definition.get("StaticHyperParameters") or {}), **tuned},
            "InputDataConfig": definition.get("InputDataConfig") or [],
            "OutputDataConfig": definition["OutputDataConfig"],
            "ResourceConfig": definition["ResourceConfig"],
            "StoppingCondition": definition.get("StoppingCondition") or {"MaxRuntimeInSeconds": 86400},
        }
        for key in (
            "EnableManagedSpotTraining",
            "EnableNetworkIsolation",
            "EnableInterContainerTrafficEncryption",
            "VpcConfig",
            "Environment",
            "RetryStrategy",
        ):
            if key in definition:
                request[key] = definition[key]
        if "CheckpointConfig" in definition:
            # Trials share the definition; own checkpoint prefixes keep them from resuming each other.
            checkpoint = dict(definition["CheckpointConfig"])
            checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{name}"
            request["CheckpointConfig"] = checkpoint
        with self._lock:
            job = self._launch_trial(
                request,
                tuning_job_arn=self.arn,
                parallel_jobs=self.parallel,
                on_metric=self._on_metric,
                on_finish=self._on_finish,
            )
            self.trials.append(_Trial(job, tuned, optuna_trial))
            self.last_modified_time = now()
        self.context.emit(
            "TuningTrial",
            tuning_job=self.name,
            job=name,
            index=index,
            hyperparameters=tuned,
            status="InProgress",
        )
        job.start()

    def _trial_for(self, job: TrainingJob) -> _Trial | None:
        return next((t for t in self.trials if t.job is job), None)

    def _on_metric(self, job: TrainingJob, metric: str, value: float, step: int) -> None:
        if metric != self.objective_metric:
            return
        with self._lock:
            trial = self._trial_for(job)
            if trial is None or job.status != "InProgress":
                return
            if trial.optuna_trial is not None and self.strategy == "Hyperband" and math.isfinite(value):
                trial.optuna_trial.report(value, step)
                # A job that reached MaxResource has had its full budget: there is nothing left to save.
                if step < self.max_resource and trial.optuna_trial.should_prune():
                    trial.pruned = True
            elif self.early_stopping:
                finished = [
                    t.job.objective_history(self.objective_metric)
                    for t in self.trials
                    if t.job.finished and t.job is not job
                ]
                trial.pruned = median_stopping_decision(
                    job.objective_history(metric), finished, self.maximize
                )
            prune = trial.pruned
        if prune:
            job.stop()

    def _on_finish(self, job: TrainingJob) -> None:
        with self._lock:
            trial = self._trial_for(job)
            if trial is None:
                return
            value = job.final_metric(self.objective_metric)
            if trial.optuna_trial is not None and self._study is not None:
                state = optuna.trial.TrialState
                if trial.pruned:
                    self._study.tell(trial.optuna_trial, state=state.PRUNED)
                elif job.status == "Completed" and value is not None and math.isfinite(value):
                    self._study.tell(trial.optuna_trial, value)
                else:
                    self._study.tell(trial.optuna_trial, state=state.FAIL)
            self._track_improvement(job, value)
            self.last_modified_time = now()
            self._wake.notify_all()
        self.context.emit(
            "TuningTrial",
            tuning_job=self.name,
            job=job.name,
            status=job.status,
            objective=value,
            early_stopped=trial.pruned,
            hyperparameters=trial.tuned,
        )

    def _track_improvement(self, job: TrainingJob, value: float | None) -> None:
        if value is None or job.status != "Completed":
            return
        others = [
            t.job.final_metric(self.objective_metric)
            for t in self.trials
            if t.job is not job and t.job.status == "Completed"
        ]
        previous = [v for v in others if v is not None]
        improved = not previous or (value > max(previous) if self.maximize else value < min(previous))
        self.jobs_not_improving = 0 if improved else self.jobs_not_improving + 1

    def _criteria_met(self) -> bool:
        criteria = self.config.get("TuningJobCompletionCriteria") or {}
        target = criteria.get("TargetObjectiveMetricValue")
        if target is not None:
            values = [
                t.job.final_metric(self.objective_metric) for t in self.trials if t.job.status == "Completed"
            ]
            scored = [v for v in values if v is not None]
            if scored and (max(scored) >= target if self.maximize else min(scored) <= target):
                return True
        patience = (criteria.get("BestObjectiveNotImproving") or {}).get(
            "MaxNumberOfTrainingJobsNotImproving"
        )
        return patience is not None and self.jobs_not_improving >= patience

    def _wait_for_trials(self) -> None:
        stopped = False
        while True:
            with self._lock:
                running = [t.job for t in self.trials if not t.job.finished]
                if not running:
                    return
                if (self._stop_requested or self._deadline_passed()) and not stopped:
                    self._stop_requested = True
                    stopped = True
                    to_stop = running
                else:
                    to_stop = []
                    self._wake.wait(0.5)
            for job in to_stop:
                job.stop()
            time.sleep(0.05)

    def _conclude(self) -> None:
        summaries = self.trial_summaries()
        _, objectives = status_counters(summaries)
        with self._lock:
            stop_requested = self._stop_requested and self.status == "Stopping"
        if stop_requested:
            self._set_status("Stopped")
        elif summaries and objectives["Succeeded"] == 0:
            reasons = [s.get("FailureReason") for s in summaries if s.get("FailureReason")]
            detail = f" First failure: {reasons[0]}" if reasons else ""
            self._set_status("Failed", f"All training jobs failed.{detail}"[:1024])
        else:
            self._set_status("Completed")
