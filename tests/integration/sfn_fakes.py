"""Fakes with real behaviour for the local Step Functions tests: Lambda functions and a SageMaker timeline."""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from stepsage.local.errors import SageMakerError, ServiceError
from stepsage.local.stepfunctions import StepFunctionsService

ROLE_ARN = "arn:aws:iam::123456789012:role/StepFunctionsRole"
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_TUNING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")


class FakeLambdas:
    """Functions by name; each call is recorded with its time, so tests can measure retry intervals."""

    def __init__(self) -> None:
        self.functions: dict[str, Callable[[dict], Any]] = {}
        self.calls: list[tuple[str, dict, float]] = []
        self._lock = threading.Lock()

    def add(self, name: str, handler: Callable[[dict], Any]) -> str:
        self.functions[name] = handler
        return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"

    def invoke(self, function_arn: str, payload: dict) -> Any:
        name = function_arn.split(":function:")[-1].split(":")[0]
        with self._lock:
            self.calls.append((name, payload, time.monotonic()))
        handler = self.functions.get(name)
        if handler is None:
            raise ServiceError("ResourceNotFoundException", f"Function not found: {function_arn}", 404)
        return handler(payload)

    def calls_to(self, name: str) -> list[tuple[dict, float]]:
        with self._lock:
            return [(payload, at) for called, payload, at in self.calls if called == name]


class FakeSageMaker:
    """Jobs and endpoints that move one status per Describe call, ending as told (Completed, Failed ...)."""

    def __init__(
        self, job_outcome: str = "Completed", failure_reason: str | None = None, describes_until_done: int = 2
    ) -> None:
        self.job_outcome = job_outcome
        self.failure_reason = failure_reason
        self.describes_until_done = describes_until_done
        self.jobs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, list[str]] = {}
        self.calls: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def handle(self, operation: str, params: dict) -> dict:
        with self._lock:
            self.calls.append((operation, json.loads(json.dumps(params))))
            handler = getattr(self, f"_{operation}", None)
            if handler is None:
                raise SageMakerError(
                    "UnknownOperationException", f"The operation {operation} is not supported"
                )
            return handler(params)

    def operations(self) -> list[str]:
        with self._lock:
            return [operation for operation, _ in self.calls]

    def _create_job(self, kind: str, name: Any, pattern: re.Pattern[str], request: dict) -> dict:
        if not isinstance(name, str) or not pattern.match(name):
            raise SageMakerError(
                "ValidationException",
                f"1 validation error detected: Value '{name}' at '{kind}Name' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern.pattern}",
            )
        if name in self.jobs:
            raise SageMakerError("ResourceInUse", f"{kind} {name} already exists")
        self.jobs[name] = {"kind": kind, "request": request, "describes": 0, "status": "InProgress"}
        return {f"{kind}Arn": f"arn:aws:sagemaker:us-east-1:123456789012:{kind.lower()}/{name}"}

    def _describe_job(self, kind: str, name: str) -> dict:
        job = self.jobs.get(name)
        if job is None or job["kind"] != kind:
            raise SageMakerError("ResourceNotFound", f"Requested resource not found: {name}")
        job["describes"] += 1
        if job["status"] == "InProgress" and job["describes"] >= self.describes_until_done:
            job["status"] = self.job_outcome
        description: dict[str, Any] = {
            f"{kind}Name": name,
            f"{kind}Arn": f"arn:aws:sagemaker:us-east-1:123456789012:{kind.lower()}/{name}",
            f"{kind}Status": job["status"],
            "CreationTime": datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC),
        }
        if job["status"] == "Failed" and self.failure_reason:
            description["FailureReason"] = self.failure_reason
        if kind == "TrainingJob" and job["status"] == "Completed":
            description["ModelArtifacts"] = {"S3ModelArtifacts": f"s3://bucket/{name}/output/model.tar.gz"}
        if kind == "HyperParameterTuningJob" and job["status"] == "Completed":
            description["BestTrainingJob"] = {
                "TrainingJobName": f"{name}-001",
                "TrainingJobStatus": "Completed",
            }
        return description

    def _CreateTrainingJob(self, params: dict) -> dict:
        return self._create_job("TrainingJob", params.get("TrainingJobName"), _JOB_NAME, params)

    def _DescribeTrainingJob(self, params: dict) -> dict:
        return self._describe_job("TrainingJob", params["TrainingJobName"])

    def _StopTrainingJob(self, params: dict) -> dict:
        job = self.jobs[params["TrainingJobName"]]
        job["status"] = "Stopped"
        return {}

    def _CreateHyperParameterTuningJob(self, params: dict) -> dict:
        name = params.get("HyperParameterTuningJobName")
        return self._create_job("HyperParameterTuningJob", name, _TUNING_JOB_NAME, params)

    def _DescribeHyperParameterTuningJob(self, params: dict) -> dict:
        return self._describe_job("HyperParameterTuningJob", params["HyperParameterTuningJobName"])

    def add_endpoint(self, name: str, statuses: list[str]) -> None:
        self.endpoints[name] = list(statuses)

    def _DescribeEndpoint(self, params: dict) -> dict:
        name = params["EndpointName"]
        statuses = self.endpoints.get(name)
        if statuses is None:
            raise SageMakerError(
                "ValidationException",
                f'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}".',
            )
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return {
            "EndpointName": name,
            "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}",
            "EndpointStatus": status,
            "CreationTime": datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC),
        }


def run_machine(
    service: StepFunctionsService,
    definition: dict,
    execution_input: Any = None,
    name: str = "run-1",
    machine_name: str = "machine",
    timeout: float = 30.0,
) -> dict:
    """Create the machine, start one execution and return its DescribeExecution output once it ends."""
    machine = service.handle(
        "CreateStateMachine",
        {"name": machine_name, "definition": json.dumps(definition), "roleArn": ROLE_ARN},
    )
    started = service.handle(
        "StartExecution",
        {
            "stateMachineArn": machine["stateMachineArn"],
            "name": name,
            "input": json.dumps(execution_input or {}),
        },
    )
    return service.wait(started["executionArn"], timeout)


def history_types(service: StepFunctionsService, execution_arn: str) -> list[str]:
    events = service.handle("GetExecutionHistory", {"executionArn": execution_arn, "maxResults": 1000})[
        "events"
    ]
    return [event["type"] for event in events]
