"""Live progress: one plain line per pipeline state, job status change, epoch, trial and transfer step."""

from __future__ import annotations

import io

import pytest

from stepsage.local.progress import ProgressPrinter
from stepsage.transfers import CountingReader, TransferProgress

pytestmark = pytest.mark.unit


def test_pipeline_and_job_events_become_plain_lines():
    stream = io.StringIO()
    printer = ProgressPrinter(stream=stream)
    printer("states", {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "RunHPO"}})
    status = {"event": "TrainingJobStatus", "job": "j-001", "status": "InProgress", "tuning_job_arn": "arn:t"}
    printer("sagemaker", {**status, "secondary_status": "Training"})
    printer("sagemaker", {**status, "secondary_status": "Training"})  # repeated: printed once
    printer("sagemaker", {"event": "Epoch", "job": "j-001", "epoch": 2, "metrics": {"valid:accuracy": 0.91}})
    for trial in ("j-001", "j-002"):
        printer(
            "sagemaker", {"event": "TuningTrial", "tuning_job": "t", "job": trial, "status": "InProgress"}
        )
    printer(
        "sagemaker",
        {
            "event": "TuningTrial",
            "tuning_job": "t",
            "job": "j-001",
            "status": "Completed",
            "objective": 0.91,
            "early_stopped": False,
        },
    )
    printer(
        "sagemaker",
        {
            "event": "TuningTrial",
            "tuning_job": "t",
            "job": "j-002",
            "status": "Stopped",
            "objective": 0.5,
            "early_stopped": True,
        },
    )
    printer("states", {"type": "TaskStateExited", "stateExitedEventDetails": {"name": "RunHPO"}})
    printer(
        "states",
        {
            "type": "ExecutionFailed",
            "executionFailedEventDetails": {"error": "DatasetValidationError", "cause": "class 002.cat"},
        },
    )
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines[0] == "state  RunHPO ..."
    assert lines[1] == "trial  j-001 InProgress (Training)"
    assert lines[2] == "epoch  j-001 #2 valid_accuracy=0.91"
    assert lines[3] == "tuning 1 done, 1 running: j-001 Completed, objective 0.91; best so far 0.91 (j-001)"
    assert lines[4] == (
        "tuning 2 done, 0 running: j-002 Stopped (stopped early), objective 0.5; best so far 0.91 (j-001)"
    )
    assert lines[5].startswith("state  RunHPO done in ")
    assert lines[6] == "pipeline FAILED: DatasetValidationError class 002.cat"
    assert "RunHPO" in printer.state_times()
    assert "\x1b" not in stream.getvalue()


def test_transfer_progress_prints_a_plain_line_per_step():
    stream = io.StringIO()
    progress = TransferProgress("uploading data.zip", 1000, stream=stream, step=25)
    for _ in range(10):
        progress(100)
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split("%")[0].strip() for line in lines] == ["30", "50", "80", "100"]
    assert all(line.startswith("uploading data.zip: ") and "\x1b" not in line for line in lines)


def test_counting_reader_reports_what_passes_through():
    stream = io.StringIO()
    reader = CountingReader(
        io.BytesIO(b"x" * 400), TransferProgress("reading output.tar.gz", 400, stream, 50)
    )
    assert reader.read(100) == b"x" * 100
    assert reader.read() == b"x" * 300
    assert reader.read() == b""
    assert [line.split(": ")[1].split("%")[0] for line in stream.getvalue().splitlines()] == ["100"]
