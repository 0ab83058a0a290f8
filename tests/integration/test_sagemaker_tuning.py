"""Tuning jobs in the local SageMaker emulator: exact Grid, MaxParallel, early stopping and Hyperband."""

from __future__ import annotations

import re
from typing import Any

import conftest_sagemaker
import pytest
from conftest_sagemaker import (
    tuning_request,
    upload_fake_job_inputs,
    wait_tuning,
)

pytestmark = pytest.mark.integration

# Fixtures shared through the helper module.
s3_endpoint = conftest_sagemaker.s3_endpoint
backend = conftest_sagemaker.backend


def _trials(backend: Any, name: str, **params: Any) -> list[dict[str, Any]]:
    request = {"HyperParameterTuningJobName": name, "MaxResults": 100, **params}
    return backend.handle("ListTrainingJobsForHyperParameterTuningJob", request)["TrainingJobSummaries"]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


def test_grid_enumerates_every_combination_once_within_max_parallel(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "grid")
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "quality", "Values": ["0.2", "0.9", "0.5"]},
            {"Name": "epochs", "Values": ["1", "2"]},
        ]
    }
    request = tuning_request(
        "grid-tune", uris, strategy="Grid", ranges=ranges, max_jobs=None, parallel=2, static={"sleep": "0.3"}
    )
    backend.handle("CreateHyperParameterTuningJob", request)
    described = wait_tuning(backend, "grid-tune")

    assert described["HyperParameterTuningJobStatus"] == "Completed"
    trials = _trials(backend, "grid-tune")
    combos = sorted(
        (t["TunedHyperParameters"]["quality"], t["TunedHyperParameters"]["epochs"]) for t in trials
    )
    assert combos == sorted((q, e) for q in ("0.2", "0.9", "0.5") for e in ("1", "2"))
    assert all(re.fullmatch(r"grid-tune-00[1-6]-[0-9a-f]{8}", t["TrainingJobName"]) for t in trials)
    assert described["TrainingJobStatusCounters"] == {
        "Completed": 6,
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": 0,
        "Stopped": 0,
    }
    assert described["ObjectiveStatusCounters"] == {"Succeeded": 6, "Pending": 0, "Failed": 0}
    best = described["BestTrainingJob"]
    assert best["TunedHyperParameters"]["quality"] == "0.9"
    assert best["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "Type": "Maximize",
        "MetricName": "valid:accuracy",
        "Value": pytest.approx(0.9),
    }
    intervals = [(t["TrainingStartTime"].timestamp(), t["TrainingEndTime"].timestamp()) for t in trials]
    assert _max_overlap(intervals) == 2  # parallel, but never beyond MaxParallelTrainingJobs
    by_value = _trials(backend, "grid-tune", SortBy="FinalObjectiveMetricValue", SortOrder="Descending")
    values = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in by_value]
    assert (
        values == sorted(values, reverse=True) and by_value[0]["TrainingJobName"] == best["TrainingJobName"]
    )
    described_trial = backend.handle("DescribeTrainingJob", {"TrainingJobName": best["TrainingJobName"]})
    assert described_trial["TuningJobArn"] == described["HyperParameterTuningJobArn"]


def test_auto_early_stopping_stops_jobs_worse_than_the_median(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "median")
    # Grid order is the listed order, so two strong jobs finish before two weak ones start.
    ranges = {"CategoricalParameterRanges": [{"Name": "quality", "Values": ["0.9", "0.8", "0.2", "0.1"]}]}
    request = tuning_request(
        "median-tune",
        uris,
        strategy="Grid",
        ranges=ranges,
        max_jobs=4,
        parallel=1,
        static={"epochs": "30", "sleep": "0.1"},
        TrainingJobEarlyStoppingType="Auto",
    )
    backend.handle("CreateHyperParameterTuningJob", request)
    described = wait_tuning(backend, "median-tune")

    by_quality = {t["TunedHyperParameters"]["quality"]: t for t in _trials(backend, "median-tune")}
    assert [by_quality[q]["TrainingJobStatus"] for q in ("0.9", "0.8", "0.2", "0.1")] == [
        "Completed",
        "Completed",
        "Stopped",
        "Stopped",
    ]
    assert described["TrainingJobStatusCounters"]["Completed"] == 2
    assert described["TrainingJobStatusCounters"]["Stopped"] == 2
    assert described["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 0}
    assert described["BestTrainingJob"]["TunedHyperParameters"] == {"quality": "0.9"}
    stopped = backend.training_jobs[by_quality["0.1"]["TrainingJobName"]]
    assert len(stopped.objective_history("valid:accuracy")) < 30  # it really was cut short


def test_hyperband_prunes_weak_trials(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "hyperband")
    ranges = {"ContinuousParameterRanges": [{"Name": "quality", "MinValue": "0.05", "MaxValue": "1.0"}]}
    request = tuning_request(
        "hyperband-tune",
        uris,
        strategy="Hyperband",
        ranges=ranges,
        max_jobs=8,
        parallel=1,
        static={"epochs": "9", "sleep": "0.05"},
        RandomSeed=7,
        StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 9}},
    )
    backend.handle("CreateHyperParameterTuningJob", request)
    described = wait_tuning(backend, "hyperband-tune", timeout=180)

    trials = _trials(backend, "hyperband-tune")
    statuses = [t["TrainingJobStatus"] for t in trials]
    counters = described["TrainingJobStatusCounters"]
    assert len(trials) == 8 and counters["Stopped"] >= 1 and counters["Completed"] >= 1
    assert counters["Stopped"] == statuses.count("Stopped") and counters["Completed"] == statuses.count(
        "Completed"
    )
    for trial in trials:
        epochs = len(backend.training_jobs[trial["TrainingJobName"]].objective_history("valid:accuracy"))
        assert (epochs < 9) == (trial["TrainingJobStatus"] == "Stopped")
    assert described["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


def test_random_and_bayesian_respect_ranges_and_stop(backend: Any, s3_endpoint: str) -> None:
    uris = upload_fake_job_inputs(s3_endpoint, "bayes")
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "quality", "MinValue": "0.001", "MaxValue": "1.0", "ScalingType": "Logarithmic"}
        ],
        "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "3"}],
    }
    for strategy in ("Random", "Bayesian"):
        name = f"{strategy.lower()}-tune"
        backend.handle(
            "CreateHyperParameterTuningJob",
            tuning_request(
                name,
                uris,
                strategy=strategy,
                ranges=ranges,
                max_jobs=4,
                parallel=2,
                RandomSeed=3,
            ),
        )
    for strategy in ("Random", "Bayesian"):
        described = wait_tuning(backend, f"{strategy.lower()}-tune")
        assert described["HyperParameterTuningJobStatus"] == "Completed"
        trials = _trials(backend, f"{strategy.lower()}-tune")
        assert len(trials) == 4
        for trial in trials:
            assert 0.001 <= float(trial["TunedHyperParameters"]["quality"]) <= 1.0
            assert trial["TunedHyperParameters"]["epochs"] in ("1", "2", "3")

    uris = upload_fake_job_inputs(s3_endpoint, "stop-tune")
    backend.handle(
        "CreateHyperParameterTuningJob",
        tuning_request(
            "stopped-tune",
            uris,
            strategy="Random",
            ranges=ranges,
            max_jobs=10,
            parallel=1,
            static={"sleep": "1"},
        ),
    )
    backend.handle("StopHyperParameterTuningJob", {"HyperParameterTuningJobName": "stopped-tune"})
    described = wait_tuning(backend, "stopped-tune")
    assert described["HyperParameterTuningJobStatus"] == "Stopped"
    assert described["TrainingJobStatusCounters"]["InProgress"] == 0
    assert sum(described["TrainingJobStatusCounters"].values()) <= 1
