"""The emulator's pure decisions: grid, sampling, names, counters, median stopping, log and exit parsing."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from typing import Any

import pytest

from stepsage.local.sagemaker.processes import describe_exit, thread_share
from stepsage.local.sagemaker.training import (
    MetricParser,
    cli_value,
    failure_reason,
    rule_status,
    script_arguments,
)
from stepsage.local.sagemaker.tuning import (
    best_trial,
    grid_combinations,
    hyperparameters_from_optuna,
    median_stopping_decision,
    sample_random,
    search_space,
    sort_trials,
    status_counters,
    trial_job_name,
)
from stepsage.local.sagemaker.validation import grid_size

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def trial(name: str, status: str, objective: str, value: float | None, minute: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobStatus": status,
        "ObjectiveStatus": objective,
        "CreationTime": T0 + dt.timedelta(minutes=minute),
    }
    if value is not None:
        out["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "valid:accuracy", "Value": value}
    return out


def test_grid_enumerates_the_exact_product_without_duplicates() -> None:
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "model", "Values": ["resnet18", "mobilenet_v3_large", "resnet18"]},
            {"Name": "lr", "Values": ["0.1", "0.01"]},
        ]
    }
    assert grid_combinations(ranges) == [
        {"model": "resnet18", "lr": "0.1"},
        {"model": "resnet18", "lr": "0.01"},
        {"model": "mobilenet_v3_large", "lr": "0.1"},
        {"model": "mobilenet_v3_large", "lr": "0.01"},
    ]
    assert grid_size(ranges) == 4


def test_trial_names_follow_sagemakers_shape() -> None:
    assert trial_job_name("stepsage-abc-hpo", 7, "0a1b2c3d") == "stepsage-abc-hpo-007-0a1b2c3d"
    name = trial_job_name("x" * 32, 123)
    assert re.fullmatch(r"x{32}-123-[0-9a-f]{8}", name) and len(name) <= 63


def test_random_sampling_honours_bounds_and_scaling() -> None:
    ranges = {
        "IntegerParameterRanges": [{"Name": "batch", "MinValue": "16", "MaxValue": "64"}],
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "0.0001", "MaxValue": "1", "ScalingType": "Logarithmic"},
            {"Name": "momentum", "MinValue": "0.9", "MaxValue": "0.999", "ScalingType": "ReverseLogarithmic"},
        ],
        "CategoricalParameterRanges": [{"Name": "model", "Values": ["a", "b"]}],
    }
    rng = random.Random(0)
    draws = [sample_random(ranges, rng) for _ in range(400)]
    assert all(16 <= int(d["batch"]) <= 64 for d in draws)
    assert all(0.9 <= float(d["momentum"]) <= 0.999 for d in draws)
    assert {d["model"] for d in draws} == {"a", "b"}
    # Log scaling spreads draws evenly over decades: about a quarter of them fall below 0.001.
    below = sum(float(d["lr"]) < 0.001 for d in draws) / len(draws)
    assert 0.15 < below < 0.35
    assert sample_random(ranges, random.Random(5)) == sample_random(ranges, random.Random(5))


def test_optuna_space_round_trips_reverse_log_and_integers() -> None:
    ranges = {
        "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "9"}],
        "ContinuousParameterRanges": [
            {"Name": "momentum", "MinValue": "0.9", "MaxValue": "0.99", "ScalingType": "ReverseLogarithmic"}
        ],
    }
    space = search_space(ranges)
    assert set(space) == {"epochs", "__one_minus__momentum"}
    values = hyperparameters_from_optuna({"epochs": 3, "__one_minus__momentum": 0.05}, ranges)
    assert values == {"epochs": "3", "momentum": repr(0.95)}


def test_counters_follow_aws_buckets() -> None:
    trials = [
        trial("a", "Completed", "Succeeded", 0.9),
        trial("b", "Stopped", "Succeeded", 0.2),
        trial("c", "Failed", "Failed", None),
        trial("d", "InProgress", "Pending", None),
        trial("e", "Stopping", "Pending", None),
    ]
    jobs, objectives = status_counters(trials)
    assert jobs == {
        "Completed": 1,
        "InProgress": 2,
        "RetryableError": 0,
        "NonRetryableError": 1,
        "Stopped": 1,
    }
    assert objectives == {"Succeeded": 2, "Pending": 2, "Failed": 1}


def test_best_trial_prefers_completed_and_earliest_on_ties() -> None:
    trials = [
        trial("a", "Completed", "Succeeded", 0.8, 0),
        trial("b", "Stopped", "Succeeded", 0.95, 1),
        trial("c", "Completed", "Succeeded", 0.8, 2),
        trial("d", "Failed", "Failed", None, 3),
    ]
    best = best_trial(trials, maximize=True)
    assert best is not None and best["TrainingJobName"] == "a"
    low = best_trial(trials, maximize=False)
    assert low is not None and low["TrainingJobName"] == "a"
    assert best_trial([trial("d", "Failed", "Failed", None)], maximize=True) is None


def test_sorting_by_objective_puts_unscored_last() -> None:
    trials = [
        trial("b", "Completed", "Succeeded", 0.5),
        trial("a", "Failed", "Failed", None),
        trial("c", "Completed", "Succeeded", 0.9),
    ]
    assert [t["TrainingJobName"] for t in sort_trials(trials, "FinalObjectiveMetricValue", "Descending")] == [
        "c",
        "b",
        "a",
    ]
    assert [t["TrainingJobName"] for t in sort_trials(trials, "Name", "Ascending")] == ["a", "b", "c"]


def test_median_stopping_compares_with_running_averages_of_finished_jobs() -> None:
    finished = [[0.5, 0.7, 0.9], [0.4, 0.6, 0.8], [0.1]]
    # At step 2 the running averages are 0.6 and 0.5 (the third job is too short): median 0.55.
    assert median_stopping_decision([0.3, 0.5], finished, maximize=True)
    assert not median_stopping_decision([0.3, 0.6], finished, maximize=True)
    assert median_stopping_decision([0.9, 0.9], [[0.1, 0.2], [0.2, 0.3]], maximize=False)
    assert not median_stopping_decision([0.0], [[0.9]], maximize=True)  # too few jobs to judge
    assert not median_stopping_decision([], finished, maximize=True)


def test_metric_lines_parse_with_metric_definitions() -> None:
    parser = MetricParser(
        [
            {
                "Name": "valid:accuracy",
                "Regex": r"\bvalid_accuracy=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan)",
            },
            {"Name": "train:loss", "Regex": r"\btrain_loss=([-+0-9.eE]+)"},
        ]
    )
    assert parser.parse("epoch=3 train_loss=4.1e-01 valid_accuracy=0.873") == {
        "valid:accuracy": 0.873,
        "train:loss": 0.41,
    }
    assert math.isnan(parser.parse("valid_accuracy=nan")["valid:accuracy"])
    assert parser.parse("nothing here") == {}


def test_arguments_strip_platform_keys_and_decode_json_strings() -> None:
    hyperparameters = {"sagemaker_program": '"train.py"', "model": '"resnet18"', "lr": "0.01", "epochs": "3"}
    assert script_arguments(hyperparameters) == ["--model", "resnet18", "--lr", "0.01", "--epochs", "3"]
    assert cli_value('"a b"') == "a b" and cli_value("[1, 2]") == "[1, 2]" and cli_value("x") == "x"


def test_failure_reasons() -> None:
    log = [
        "epoch=1 ...",
        "Traceback (most recent call last):",
        '  File "train.py"',
        "ValueError: empty class 003",
    ]
    assert failure_reason(1, log, None) == "AlgorithmError: ValueError: empty class 003, exit code: 1"
    assert failure_reason(1, log, "disk full\n") == "AlgorithmError: disk full, exit code: 1"
    assert failure_reason(-9, [], None) == "AlgorithmError: killed by signal 9 (SIGKILL)"
    assert describe_exit(-15) == "killed by signal 15 (SIGTERM)"


def test_thread_share_never_oversubscribes_or_starves() -> None:
    assert [thread_share(2, n) for n in (1, 2, 3)] == [2, 1, 1]
    assert thread_share(16, 3) == 5 and thread_share(1, 0) == 1


def test_rule_status_from_verdicts() -> None:
    assert rule_status({"rules": [{"status": "NoIssuesFound"}], "issues_found": False}) == (
        "NoIssuesFound",
        None,
    )
    assert rule_status(
        {"rules": [{"status": "NoIssuesFound"}, {"status": "IssuesFound", "message": "m"}]}
    ) == ("IssuesFound", "m")
    assert rule_status({"status": "Error", "message": "no tensors"}) == ("Error", "no tensors")
    assert rule_status({"rules": []})[0] == "Error"


def test_rule_status_picks_the_named_rule() -> None:
    verdicts = {
        "rules": [
            {"name": "Overfit", "status": "IssuesFound", "message": "gap"},
            {"name": "VanishingGradient", "status": "NoIssuesFound", "message": "ok"},
        ]
    }
    assert rule_status(verdicts, "VanishingGradient") == ("NoIssuesFound", "ok")
    assert rule_status(verdicts, "Overfit") == ("IssuesFound", "gap")
    assert rule_status(verdicts, "LossNotDecreasing")[0] == "Error"


def test_checkpoint_sync_skips_a_file_renamed_away_mid_sync(tmp_path):
    from stepsage.local.sagemaker.storage import S3Storage

    (tmp_path / ".checkpoint-epoch0007.pt.tmp").write_bytes(b"partial")
    (tmp_path / "checkpoint-epoch0006.pt").write_bytes(b"done")
    storage = S3Storage.__new__(S3Storage)
    sent: list[str] = []

    def upload_file(source, uri):
        if source.name.endswith(".tmp"):
            source.rename(
                source.with_name("checkpoint-epoch0007.pt")
            )  # the job's atomic rename wins the race
            raise FileNotFoundError(source)
        sent.append(uri)

    storage.upload_file = upload_file  # type: ignore[method-assign]
    uploaded: dict[str, float] = {}
    assert storage.sync_up(tmp_path, "s3://bucket/checkpoints/", uploaded) == 1
    assert sent == ["s3://bucket/checkpoints/checkpoint-epoch0006.pt"]
    # The next sync uploads what replaced the temp file.
    assert storage.sync_up(tmp_path, "s3://bucket/checkpoints/", uploaded) == 1
    assert sent[-1] == "s3://bucket/checkpoints/checkpoint-epoch0007.pt"
