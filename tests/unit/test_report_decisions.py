"""Report decisions without AWS: history reading, state runs, sample picking, the 133-class confusion view."""

from __future__ import annotations

import datetime
import json
import random
import sys
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest

from stepsage.report import plots
from stepsage.report.collect import pick_samples, unquote
from stepsage.report.graph import build_graph, runs_from_history
from stepsage.report.history import (
    TRAINING_RESOURCE,
    TUNING_RESOURCE,
    integration_of,
    sagemaker_jobs,
    state_document,
    task_resources,
)

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "training_code"))
import evaluation as training_evaluation  # noqa: E402

DEFINITION = json.loads((REPO_ROOT / "state_machine" / "pipeline.asl.json").read_text())
T0 = datetime.datetime(2026, 11, 20, 9, 0, 0, tzinfo=datetime.UTC)


def _event(seconds: float, kind: str, **details: object) -> dict:
    event: dict = {"timestamp": T0 + datetime.timedelta(seconds=seconds), "type": kind}
    if details:
        key = next(iter(details))
        event[key] = details[key]
    return event


def test_integrations_are_recognised_by_resource_not_by_state_name():
    assert integration_of("arn:aws:states:::sagemaker:createTrainingJob.sync") == TRAINING_RESOURCE
    assert integration_of("sagemaker:createHyperParameterTuningJob.sync") == TUNING_RESOURCE
    assert integration_of("arn:aws:states:::aws-sdk:sagemaker:describeEndpoint") is None
    assert integration_of("arn:aws:lambda:us-east-1:1:function:x") is None
    found = task_resources(DEFINITION)
    assert found == {
        "RunHPO": TUNING_RESOURCE,
        "TrainFinal": TRAINING_RESOURCE,
        "TrainFinalManaged": TRAINING_RESOURCE,
    }


def test_job_names_come_from_the_newest_attempt_and_survive_a_failed_job():
    events = [
        _event(0, "TaskStateEntered", stateEnteredEventDetails={"name": "TrainFinal"}),
        _event(
            1,
            "TaskScheduled",
            taskScheduledEventDetails={
                "resourceType": "sagemaker",
                "resource": "createTrainingJob.sync",
                "parameters": json.dumps({"TrainingJobName": "x-final-0"}),
            },
        ),
        _event(
            2,
            "TaskFailed",
            taskFailedEventDetails={
                "resourceType": "sagemaker",
                "resource": "createTrainingJob.sync",
                "error": "SageMaker.AmazonSageMakerException",
            },
        ),
        _event(
            3,
            "TaskScheduled",
            taskScheduledEventDetails={
                "resourceType": "sagemaker",
                "resource": "createTrainingJob.sync",
                "parameters": json.dumps({"TrainingJobName": "x-final-1"}),
            },
        ),
        _event(
            9,
            "TaskFailed",
            taskFailedEventDetails={
                "resourceType": "sagemaker",
                "resource": "createTrainingJob.sync",
                "error": "States.TaskFailed",
            },
        ),
    ]
    jobs = sagemaker_jobs(events, DEFINITION)
    assert set(jobs) == {TRAINING_RESOURCE}
    assert (jobs[TRAINING_RESOURCE].name, jobs[TRAINING_RESOURCE].status) == ("x-final-1", "failed")
    assert jobs[TRAINING_RESOURCE].state == "TrainFinal"


def test_job_name_from_the_describe_output_when_history_has_no_parameters():
    events = [
        _event(0, "TaskStateEntered", stateEnteredEventDetails={"name": "RunHPO"}),
        _event(
            1,
            "TaskScheduled",
            taskScheduledEventDetails={
                "resourceType": "sagemaker",
                "resource": "createHyperParameterTuningJob.sync",
            },
        ),
        _event(
            5,
            "TaskSucceeded",
            taskSucceededEventDetails={
                "resourceType": "sagemaker",
                "resource": "createHyperParameterTuningJob.sync",
                "output": json.dumps({"HyperParameterTuningJobName": "x-h0"}),
            },
        ),
    ]
    jobs = sagemaker_jobs(events, DEFINITION)
    assert (jobs[TUNING_RESOURCE].name, jobs[TUNING_RESOURCE].status) == ("x-h0", "succeeded")


def test_state_runs_count_retries_catches_loops_and_the_failing_end():
    events = [
        _event(0, "ExecutionStarted", executionStartedEventDetails={"input": "{}"}),
        _event(0, "TaskStateEntered", stateEnteredEventDetails={"name": "CheckRules"}),
        _event(5, "LambdaFunctionFailed", lambdaFunctionFailedEventDetails={"error": "RulesStillEvaluating"}),
        _event(65, "LambdaFunctionSucceeded", lambdaFunctionSucceededEventDetails={"output": "{}"}),
        _event(66, "TaskStateExited", stateExitedEventDetails={"name": "CheckRules", "output": '{"a": 1}'}),
        _event(66, "WaitStateEntered", stateEnteredEventDetails={"name": "WaitForEndpoint"}),
        _event(96, "WaitStateExited", stateExitedEventDetails={"name": "WaitForEndpoint"}),
        _event(96, "WaitStateEntered", stateEnteredEventDetails={"name": "WaitForEndpoint"}),
        _event(126, "WaitStateExited", stateExitedEventDetails={"name": "WaitForEndpoint"}),
        _event(126, "TaskStateEntered", stateEnteredEventDetails={"name": "SmokeTest"}),
        _event(130, "LambdaFunctionFailed", lambdaFunctionFailedEventDetails={"error": "SmokeTestFailed"}),
        _event(130, "TaskStateExited", stateExitedEventDetails={"name": "SmokeTest", "output": '{"b": 2}'}),
        _event(131, "FailStateEntered", stateEnteredEventDetails={"name": "PipelineFailed"}),
        _event(131, "ExecutionFailed", executionFailedEventDetails={"error": "SmokeTestFailed"}),
    ]
    runs = runs_from_history(events)
    assert runs["CheckRules"].status == "succeeded" and runs["CheckRules"].seconds == 66
    assert runs["WaitForEndpoint"].entries == 2 and runs["WaitForEndpoint"].seconds == 60
    assert (runs["SmokeTest"].status, runs["SmokeTest"].error) == ("caught", "SmokeTestFailed")
    assert (runs["PipelineFailed"].status, runs["PipelineFailed"].error) == ("failed", "SmokeTestFailed")
    assert state_document(events) == {"b": 2}
    assert state_document(events, execution_output='{"done": true}') == {"done": True}


def test_a_running_execution_shows_its_current_state_running():
    events = [
        _event(0, "TaskStateEntered", stateEnteredEventDetails={"name": "RunHPO"}),
        _event(40, "TaskSubmitted", taskSubmittedEventDetails={"resourceType": "sagemaker"}),
    ]
    runs = runs_from_history(events)
    assert (runs["RunHPO"].status, runs["RunHPO"].seconds) == ("running", 40)


def test_graph_figure_colours_states_by_their_runs():
    model = build_graph(DEFINITION)
    model.runs = runs_from_history(
        [
            _event(0, "TaskStateEntered", stateEnteredEventDetails={"name": "StageData"}),
            _event(
                2,
                "LambdaFunctionFailed",
                lambdaFunctionFailedEventDetails={"error": "DatasetValidationError"},
            ),
            _event(2, "TaskStateExited", stateExitedEventDetails={"name": "StageData"}),
        ]
    )
    from stepsage.report.graph import STATUS_COLOURS, draw_figure

    figure = draw_figure(model, "t")
    boxes = {text.get_text().split("\n")[0]: text for text in figure.axes[0].texts}
    assert "DatasetValidationError" in boxes["StageData"].get_text()
    colours = {mcolors.to_hex(p.get_facecolor()) for p in figure.axes[0].patches}
    assert {STATUS_COLOURS["caught"], STATUS_COLOURS["not run"]} <= colours
    assert STATUS_COLOURS["failed"] not in colours


def test_samples_spread_over_classes():
    keys = [f"{c:03d}.class/{i}.jpg" for c in range(133) for i in range(3)] + ["stray.jpg"]
    chosen = pick_samples(keys, 16)
    assert len(chosen) == 16 and len({label for _, label in chosen}) == 16
    assert chosen[0] == ("000.class/0.jpg", "000.class")
    few = pick_samples([f"{c}/{i}.png" for c in "ab" for i in range(5)], 5)
    assert [label for _, label in few] == ["a", "b", "a", "b", "a"]
    assert pick_samples(["x.png"], 4) == []
    assert unquote('"adamw"') == "adamw" and unquote("0.01") == "0.01"


def _planted_evaluation(classes: int = 133, seed: int = 0) -> tuple[dict, list[int]]:
    """A 133-class evaluation from the training code's own scorer, with one planted confusion group."""
    rng = random.Random(seed)
    group = [5, 70, 131, 40]  # far apart in label order, confused with each other
    truth, predicted = [], []
    for label in range(classes):
        for _ in range(6):
            truth.append(label)
            if label in group and rng.random() < 0.6:
                predicted.append(rng.choice([g for g in group if g != label]))
            else:
                predicted.append(label)
    labels = [f"{i + 1:03d}.Breed_number_{i + 1}" for i in range(classes)]
    return training_evaluation.evaluation_report(labels, truth, predicted), group


def test_confusion_order_puts_mutually_confused_classes_together():
    report, group = _planted_evaluation()
    order = plots.confusion_order(np.array(report["confusion_matrix"], dtype=float))
    assert sorted(order) == list(range(133))
    positions = sorted(order.index(g) for g in group)
    assert positions == list(range(positions[0], positions[0] + len(group)))
    identity = np.eye(4) * 3
    assert plots.confusion_order(identity) == [0, 1, 2, 3]


def test_confusion_matrix_stays_readable_at_133_classes():
    report, group = _planted_evaluation()
    figure = plots.confusion_matrix_figure(report)
    axes = figure.axes[0]
    assert not axes.texts  # no per-cell numbers
    labels = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
    assert 0 < len(labels) <= plots.MAX_TICK_LABELS
    assert axes.get_xlabel() == "predicted class" and axes.get_ylabel() == "true class"
    shown = axes.get_images()[0].get_array()
    assert np.allclose(np.asarray(shown).sum(axis=1), 1.0)  # rows normalised
    top = plots.top_confusions(report, limit=3)
    assert all(
        report["labels"].index(t) in group and report["labels"].index(p) in group for t, p, _, _ in top
    )


def test_small_confusion_matrix_shows_numbers_in_label_order():
    report = training_evaluation.evaluation_report(["a", "b", "c"], [0, 0, 1, 2, 2], [0, 1, 1, 2, 0])
    axes = plots.confusion_matrix_figure(report).axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b", "c"]
    assert sorted(t.get_text() for t in axes.texts) == ["0.50", "0.50", "0.50", "0.50", "1.00"]


def test_per_class_accuracy_names_the_worst_classes_at_133():
    report, group = _planted_evaluation()
    figure = plots.per_class_accuracy_figure(report, worst=10)
    worst_axes = figure.axes[1]
    named = [t.get_text() for t in worst_axes.get_yticklabels()]
    assert len(named) == 10
    assert {report["labels"][g] for g in group} <= set(named)
    assert all(a.get_xlabel() and a.get_ylabel() for a in figure.axes)
