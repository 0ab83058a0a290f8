"""`stepsage local run`'s summary names the jobs and endpoint that its execution's history names."""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
from typing import Any

import pytest

from stepsage.local.cli import summarize

pytestmark = pytest.mark.unit

ARN = "arn:aws:states:us-east-1:123456789012:execution:pipeline:run-a"
DEFINITION = {
    "StartAt": "RunHPO",
    "States": {
        "RunHPO": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync",
        },
        "TrainFinal": {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync"},
    },
}
STARTED = dt.datetime(2026, 11, 5, 12, 0, 0, tzinfo=dt.UTC)


def _history(tuning: str, training: str, endpoint: str) -> list[dict[str, Any]]:
    def entered(state: str) -> dict[str, Any]:
        return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": state}}

    def scheduled(resource: str, parameters: dict[str, Any]) -> dict[str, Any]:
        details = {"resourceType": "sagemaker", "resource": resource, "parameters": json.dumps(parameters)}
        return {"type": "TaskScheduled", "taskScheduledEventDetails": details}

    def succeeded(resource: str) -> dict[str, Any]:
        return {
            "type": "TaskSucceeded",
            "taskSucceededEventDetails": {"resourceType": "sagemaker", "resource": resource, "output": "{}"},
        }

    output = {"deployment": {"endpoint_name": endpoint, "deployed": True}}
    return [
        {"type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{}"}},
        entered("RunHPO"),
        scheduled("createHyperParameterTuningJob.sync", {"HyperParameterTuningJobName": tuning}),
        succeeded("createHyperParameterTuningJob.sync"),
        entered("TrainFinal"),
        scheduled("createTrainingJob.sync", {"TrainingJobName": training}),
        succeeded("createTrainingJob.sync"),
        {"type": "ExecutionSucceeded", "executionSucceededEventDetails": {"output": json.dumps(output)}},
    ]


def _model_tarball(accuracy: float) -> bytes:
    buffer = io.BytesIO()
    data = json.dumps({"accuracy": accuracy}).encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("evaluation.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _StepFunctions:
    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        output = {"deployment": {"endpoint_name": "stepsage-digits"}}
        return {
            "executionArn": executionArn,
            "status": "SUCCEEDED",
            "startDate": STARTED,
            "output": json.dumps(output),
        }

    def describe_state_machine_for_execution(self, executionArn: str) -> dict[str, Any]:
        return {"definition": json.dumps(DEFINITION)}

    def get_execution_history(self, executionArn: str, **_: Any) -> dict[str, Any]:
        return {"events": _history("run-a-hpo", "run-a-final", "stepsage-digits")}


class _SageMaker:
    """Run A's jobs, and run B's made a moment later (same second): newest-after-start would pick B's."""

    def __init__(self) -> None:
        self.created = {
            "run-a-hpo": STARTED + dt.timedelta(seconds=0.2),
            "run-b-hpo": STARTED + dt.timedelta(seconds=0.4),
            "run-a-final": STARTED + dt.timedelta(seconds=30.1),
            "run-b-final": STARTED + dt.timedelta(seconds=30.3),
        }

    def list_hyper_parameter_tuning_jobs(self, **_: Any) -> dict[str, Any]:
        names = ["run-b-hpo", "run-a-hpo"]
        return {
            "HyperParameterTuningJobSummaries": [
                {"HyperParameterTuningJobName": n, "CreationTime": self.created[n]} for n in names
            ]
        }

    def list_training_jobs(self, **_: Any) -> dict[str, Any]:
        names = ["run-b-final", "run-a-final"]
        return {
            "TrainingJobSummaries": [{"TrainingJobName": n, "CreationTime": self.created[n]} for n in names]
        }

    def describe_hyper_parameter_tuning_job(self, HyperParameterTuningJobName: str) -> dict[str, Any]:
        run = HyperParameterTuningJobName.split("-hpo")[0]
        return {
            "HyperParameterTuningJobName": HyperParameterTuningJobName,
            "CreationTime": self.created[HyperParameterTuningJobName],
            "BestTrainingJob": {
                "TrainingJobName": f"{run}-hpo-001",
                "TunedHyperParameters": {"lr": "0.001" if run == "run-a" else "0.1"},
                "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "valid:accuracy", "Value": 0.9},
            },
        }

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        return {
            "TrainingJobName": TrainingJobName,
            "CreationTime": self.created[TrainingJobName],
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://artifacts/{TrainingJobName}/output/model.tar.gz"},
        }

    def list_endpoints(self, **_: Any) -> dict[str, Any]:
        return {
            "Endpoints": [
                {"EndpointName": "stepsage-digits-2", "EndpointStatus": "Creating"},
                {"EndpointName": "stepsage-digits", "EndpointStatus": "InService"},
            ]
        }

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        status = {"stepsage-digits": "InService", "stepsage-digits-2": "Creating"}[EndpointName]
        return {"EndpointName": EndpointName, "EndpointStatus": status}


class _S3:
    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        body = _model_tarball(0.97 if Key.startswith("run-a-") else 0.12)
        return {"Body": io.BytesIO(body), "ContentLength": len(body)}


def test_the_summary_reads_its_jobs_from_the_history_when_timestamps_would_mislead():
    clients = {"stepfunctions": _StepFunctions(), "sagemaker": _SageMaker(), "s3": _S3()}
    summary = summarize(clients.__getitem__, ARN, "digits", "http://127.0.0.1:9000/")
    assert summary["status"] == "SUCCEEDED"
    assert summary["tuning_job"] == "run-a-hpo"
    assert summary["best_training_job"] == "run-a-hpo-001"
    assert summary["best_hyperparameters"] == {"lr": "0.001"}
    assert summary["best_objective"] == {"valid:accuracy": 0.9}
    assert summary["final_training_job"] == "run-a-final"
    assert summary["model_artifact"] == "s3://artifacts/run-a-final/output/model.tar.gz"
    assert summary["test_accuracy"] == 0.97
    assert (summary["endpoint"], summary["endpoint_status"]) == ("stepsage-digits", "InService")
    assert summary["function_url"] == "http://127.0.0.1:9000/"
