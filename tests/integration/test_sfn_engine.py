"""What the pipeline leans on in the local Step Functions engine, written from the AWS docs' examples."""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sfn_fakes import ROLE_ARN, FakeLambdas, FakeSageMaker, history_types, run_machine

from stepsage.local.errors import LambdaFunctionError
from stepsage.local.stepfunctions import StepFunctionsService

pytestmark = pytest.mark.integration

TIME_SCALE = 0.05
INVOKE = "arn:aws:states:::lambda:invoke"


@pytest.fixture
def lambdas() -> FakeLambdas:
    return FakeLambdas()


@pytest.fixture
def sagemaker() -> FakeSageMaker:
    return FakeSageMaker()


@pytest.fixture
def service(lambdas: FakeLambdas, sagemaker: FakeSageMaker) -> Iterator[StepFunctionsService]:
    local = StepFunctionsService(lambdas.invoke, sagemaker, aws_endpoint_url=None, time_scale=TIME_SCALE)
    yield local
    local.shutdown()


def failing_then(result: Any, failures: int, error_type: str = "ThrottlingError") -> Any:
    """A handler that raises `error_type` `failures` times, then returns `result`."""
    attempts = {"count": 0}

    def handler(payload: dict) -> Any:
        attempts["count"] += 1
        if attempts["count"] <= failures:
            raise LambdaFunctionError(error_type, f"attempt {attempts['count']} failed", ["  File app.py"])
        return result

    return handler


def lambda_task(function_arn: str, **fields: Any) -> dict:
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": INVOKE,
        "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
        "OutputPath": "$.Payload",
    }
    task.update(fields)
    if "Next" not in task:
        task["End"] = True
    return task


# --- Retry -----------------------------------------------------------------------------------------


def test_retry_backs_off_by_the_rate_on_a_scaled_clock(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    arn = lambdas.add("flaky", failing_then({"done": True}, failures=3))
    retry = [{"ErrorEquals": ["ThrottlingError"], "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 3}]
    result = run_machine(service, {"StartAt": "Call", "States": {"Call": lambda_task(arn, Retry=retry)}})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"done": True}
    times = [at for _, at in lambdas.calls_to("flaky")]
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 2 s, 4 s, 8 s of AWS time, scaled by TIME_SCALE.
    for gap, aws_seconds in zip(gaps, (2, 4, 8), strict=True):
        assert gap >= aws_seconds * TIME_SCALE * 0.95
        assert gap < aws_seconds * TIME_SCALE + 0.5
    assert gaps[0] < gaps[1] < gaps[2]


def test_retry_stops_after_max_attempts_and_fails_with_the_lambda_error(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    arn = lambdas.add("broken", failing_then({}, failures=100, error_type="ThrottlingError"))
    retry = [{"ErrorEquals": ["ThrottlingError"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    result = run_machine(service, {"StartAt": "Call", "States": {"Call": lambda_task(arn, Retry=retry)}})

    assert result["status"] == "FAILED"
    assert result["error"] == "ThrottlingError"
    assert json.loads(result["cause"])["errorMessage"] == "attempt 3 failed"
    assert len(lambdas.calls_to("broken")) == 3


def test_max_attempts_zero_never_retries(service: StepFunctionsService, lambdas: FakeLambdas) -> None:
    arn = lambdas.add("broken", failing_then({}, failures=100))
    retry = [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}]
    result = run_machine(service, {"StartAt": "Call", "States": {"Call": lambda_task(arn, Retry=retry)}})

    assert result["status"] == "FAILED"
    assert len(lambdas.calls_to("broken")) == 1


def test_retry_count_and_execution_name_in_states_format(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    arn = lambdas.add("launch", failing_then({"launched": True}, failures=2))
    task = {
        "Type": "Task",
        "Resource": INVOKE,
        "Parameters": {
            "FunctionName": arn,
            "Payload": {"JobName.$": "States.Format('{}-r{}', $$.Execution.Name, $$.State.RetryCount)"},
        },
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3}],
        "End": True,
    }
    result = run_machine(service, {"StartAt": "Launch", "States": {"Launch": task}}, name="exec-7")

    assert result["status"] == "SUCCEEDED"
    assert [payload["JobName"] for payload, _ in lambdas.calls_to("launch")] == [
        "exec-7-r0",
        "exec-7-r1",
        "exec-7-r2",
    ]


# --- Catch and error names ---------------------------------------------------------------------------


def test_catch_with_result_path_keeps_the_input(service: StepFunctionsService, lambdas: FakeLambdas) -> None:
    arn = lambdas.add("stage", failing_then({}, failures=1, error_type="DatasetValidationError"))
    definition = {
        "StartAt": "Stage",
        "States": {
            "Stage": lambda_task(
                arn,
                Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"}],
                Next="Done",
            ),
            "Handled": {"Type": "Pass", "End": True},
            "Done": {"Type": "Succeed"},
        },
    }
    result = run_machine(service, definition, {"dataset": "s3://data/datasets/x.zip"})

    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["dataset"] == "s3://data/datasets/x.zip"
    assert output["error"]["Error"] == "DatasetValidationError"
    cause = json.loads(output["error"]["Cause"])
    assert cause["errorType"] == "DatasetValidationError"
    assert cause["errorMessage"] == "attempt 1 failed"
    assert cause["stackTrace"] == ["  File app.py"]


@pytest.mark.parametrize(
    ("error_equals", "caught_by"),
    [
        (["DatasetValidationError"], "ByName"),
        (["States.TaskFailed"], "ByName"),
        (["States.ALL"], "ByName"),
        (["SomethingElse"], None),
    ],
)
def test_lambda_error_names_match_catchers(
    service: StepFunctionsService, lambdas: FakeLambdas, error_equals: list[str], caught_by: str | None
) -> None:
    arn = lambdas.add("stage", failing_then({}, failures=1, error_type="DatasetValidationError"))
    definition = {
        "StartAt": "Stage",
        "States": {
            "Stage": lambda_task(arn, Catch=[{"ErrorEquals": error_equals, "Next": "ByName"}]),
            "ByName": {"Type": "Pass", "Result": "caught", "End": True},
        },
    }
    result = run_machine(service, definition)

    if caught_by:
        assert result["status"] == "SUCCEEDED"
        assert json.loads(result["output"]) == "caught"
    else:
        assert result["status"] == "FAILED"
        assert result["error"] == "DatasetValidationError"


def test_first_matching_retrier_wins_and_others_are_skipped(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    arn = lambdas.add("stage", failing_then({"ok": 1}, failures=1, error_type="DatasetValidationError"))
    retry = [
        {"ErrorEquals": ["ThrottlingError"], "MaxAttempts": 5},
        {"ErrorEquals": ["DatasetValidationError"], "MaxAttempts": 0},
    ]
    catch = [{"ErrorEquals": ["DatasetValidationError"], "ResultPath": "$.error", "Next": "Caught"}]
    definition = {
        "StartAt": "Stage",
        "States": {
            "Stage": lambda_task(arn, Retry=retry, Catch=catch),
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    result = run_machine(service, definition)

    assert result["status"] == "SUCCEEDED"
    assert len(lambdas.calls_to("stage")) == 1


def test_missing_function_is_a_lambda_service_error(service: StepFunctionsService) -> None:
    missing = "arn:aws:lambda:us-east-1:123456789012:function:absent"
    result = run_machine(service, {"StartAt": "Call", "States": {"Call": lambda_task(missing)}})

    assert result["status"] == "FAILED"
    assert result["error"] == "Lambda.ResourceNotFoundException"
    assert "Function not found" in result["cause"]


def test_an_invoke_that_breaks_outside_the_function_is_lambda_service_exception(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    def worker_crash(payload: dict) -> Any:
        raise BrokenPipeError("worker process died")

    arn = lambdas.add("crashy", worker_crash)
    retry = [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 1, "MaxAttempts": 1}]
    result = run_machine(service, {"StartAt": "Call", "States": {"Call": lambda_task(arn, Retry=retry)}})

    assert result["status"] == "FAILED"
    assert result["error"] == "Lambda.ServiceException"
    assert len(lambdas.calls_to("crashy")) == 2


def test_plain_function_arn_resource_returns_the_result_and_names_errors(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    echo = lambdas.add("echo", lambda payload: {"echo": payload})
    broken = lambdas.add("broken", failing_then({}, failures=1, error_type="DatasetValidationError"))
    definition = {
        "StartAt": "Echo",
        "States": {
            "Echo": {"Type": "Task", "Resource": echo, "ResultPath": "$.echoed", "Next": "Broken"},
            "Broken": {"Type": "Task", "Resource": broken, "End": True},
        },
    }
    result = run_machine(service, definition, {"n": 1})

    assert result["status"] == "FAILED"
    assert result["error"] == "DatasetValidationError"
    assert lambdas.calls_to("broken")[0][0] == {"n": 1, "echoed": {"echo": {"n": 1}}}


# --- TimeoutSeconds ------------------------------------------------------------------------------------


def test_task_timeout_fails_with_states_timeout(service: StepFunctionsService, lambdas: FakeLambdas) -> None:
    release = threading.Event()

    def slow(payload: dict) -> Any:
        release.wait(10)
        return {"late": True}

    arn = lambdas.add("slow", slow)
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": lambda_task(
                arn,
                TimeoutSeconds=1,
                Catch=[{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "T"}],
            ),
            "T": {"Type": "Pass", "End": True},
        },
    }
    started = time.monotonic()
    try:
        result = run_machine(service, definition)
    finally:
        release.set()

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["error"]["Error"] == "States.Timeout"
    # TimeoutSeconds is not scaled: Lambdas and jobs run at real speed.
    assert 0.9 <= time.monotonic() - started < 5


def test_states_task_failed_does_not_catch_a_timeout(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    release = threading.Event()
    arn = lambdas.add("slow", lambda payload: release.wait(10))
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": lambda_task(
                arn, TimeoutSeconds=1, Catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "T"}]
            ),
            "T": {"Type": "Pass", "End": True},
        },
    }
    try:
        result = run_machine(service, definition)
    finally:
        release.set()

    assert result["status"] == "FAILED"
    assert result["error"] == "States.Timeout"


# --- Fail state ------------------------------------------------------------------------------------------


def test_fail_state_reports_the_original_error_through_error_and_cause_paths(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    arn = lambdas.add("stage", failing_then({}, failures=1, error_type="DatasetValidationError"))
    definition = {
        "StartAt": "Stage",
        "States": {
            "Stage": lambda_task(
                arn, Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Notify"}]
            ),
            "Notify": {"Type": "Pass", "ResultPath": "$.notified", "Result": True, "Next": "Failed"},
            "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        },
    }
    result = run_machine(service, definition)

    assert result["status"] == "FAILED"
    assert result["error"] == "DatasetValidationError"
    assert json.loads(result["cause"])["errorMessage"] == "attempt 1 failed"


# --- SageMaker -----------------------------------------------------------------------------------------

TRAIN_SYNC = {
    "Type": "Task",
    "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
    "Parameters": {"TrainingJobName.$": "$$.Execution.Name", "RoleArn": ROLE_ARN},
    "End": True,
}


def test_sync_training_job_that_fails_reports_states_task_failed_with_the_describe_output(
    lambdas: FakeLambdas,
) -> None:
    sagemaker = FakeSageMaker(
        job_outcome="Failed", failure_reason="AlgorithmError: loss is NaN", describes_until_done=3
    )
    local = StepFunctionsService(lambdas.invoke, sagemaker, aws_endpoint_url=None, time_scale=TIME_SCALE)
    try:
        train = {key: value for key, value in TRAIN_SYNC.items() if key != "End"}
        train["Catch"] = [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Caught"}]
        train["Next"] = "Caught"
        definition = {"StartAt": "Train", "States": {"Train": train, "Caught": {"Type": "Pass", "End": True}}}
        result = run_machine(local, definition, {"keep": 1}, name="train-1")
    finally:
        local.shutdown()

    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["keep"] == 1
    assert output["error"]["Error"] == "States.TaskFailed"
    cause = json.loads(output["error"]["Cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"] == "AlgorithmError: loss is NaN"
    assert cause["TrainingJobName"] == "train-1"
    assert sagemaker.operations() == ["CreateTrainingJob"] + ["DescribeTrainingJob"] * 3


def test_sync_training_job_that_completes_returns_the_describe_output(
    service: StepFunctionsService, sagemaker: FakeSageMaker
) -> None:
    result = run_machine(service, {"StartAt": "Train", "States": {"Train": TRAIN_SYNC}}, name="train-2")

    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["TrainingJobStatus"] == "Completed"
    assert output["ModelArtifacts"]["S3ModelArtifacts"] == "s3://bucket/train-2/output/model.tar.gz"
    # Optimized integrations give timestamps as epoch milliseconds.
    assert output["CreationTime"] == 1793534400000
    assert sagemaker.calls[0] == ("CreateTrainingJob", {"TrainingJobName": "train-2", "RoleArn": ROLE_ARN})


def test_sync_tuning_job_returns_best_training_job(service: StepFunctionsService) -> None:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync",
        "Parameters": {"HyperParameterTuningJobName.$": "States.Format('hpo-{}', $$.Execution.Name)"},
        "End": True,
    }
    result = run_machine(service, {"StartAt": "Tune", "States": {"Tune": task}}, name="abc")

    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["HyperParameterTuningJobStatus"] == "Completed"
    assert output["BestTrainingJob"]["TrainingJobName"] == "hpo-abc-001"


def test_sagemaker_request_error_is_amazon_sagemaker_exception(service: StepFunctionsService) -> None:
    task = {**TRAIN_SYNC, "Parameters": {"TrainingJobName": "not_a_valid_name!"}}
    result = run_machine(service, {"StartAt": "Train", "States": {"Train": task}})

    assert result["status"] == "FAILED"
    assert result["error"] == "SageMaker.AmazonSageMakerException"
    assert "Error Code: ValidationException" in result["cause"]
    assert "Service: AmazonSageMaker" in result["cause"]


def test_stopping_an_execution_stops_its_sync_job() -> None:
    slow = FakeSageMaker(describes_until_done=10_000)
    local = StepFunctionsService(FakeLambdas().invoke, slow, aws_endpoint_url=None, time_scale=TIME_SCALE)
    try:
        machine = local.handle(
            "CreateStateMachine",
            {
                "name": "train",
                "definition": json.dumps({"StartAt": "Train", "States": {"Train": TRAIN_SYNC}}),
                "roleArn": ROLE_ARN,
            },
        )
        arn = local.handle("StartExecution", {"stateMachineArn": machine["stateMachineArn"], "name": "long"})[
            "executionArn"
        ]
        deadline = time.monotonic() + 10
        while "DescribeTrainingJob" not in slow.operations() and time.monotonic() < deadline:
            time.sleep(0.01)
        local.handle("StopExecution", {"executionArn": arn, "error": "User", "cause": "enough"})
        result = local.wait(arn, 10)
        deadline = time.monotonic() + 10
        while "StopTrainingJob" not in slow.operations() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        local.shutdown()

    assert result["status"] == "ABORTED"
    assert (result["error"], result["cause"]) == ("User", "enough")
    assert slow.jobs["long"]["status"] == "Stopped"


def test_aws_sdk_describe_endpoint_wait_loop(service: StepFunctionsService, sagemaker: FakeSageMaker) -> None:
    sagemaker.add_endpoint("stepsage-digits", ["Creating", "Creating", "InService"])
    definition = {
        "StartAt": "Describe",
        "States": {
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
                "Parameters": {"EndpointName.$": "$.endpoint"},
                "ResultSelector": {"status.$": "$.EndpointStatus"},
                "ResultPath": "$.describe",
                "Next": "InService?",
            },
            "InService?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.describe.status", "StringEquals": "InService", "Next": "Done"}],
                "Default": "Wait",
            },
            "Wait": {"Type": "Wait", "Seconds": 10, "Next": "Describe"},
            "Done": {"Type": "Succeed"},
        },
    }
    started = time.monotonic()
    result = run_machine(service, definition, {"endpoint": "stepsage-digits"})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["describe"] == {"status": "InService"}
    assert sagemaker.operations() == ["DescribeEndpoint"] * 3
    # Two 10 s waits on a clock scaled by TIME_SCALE.
    assert 2 * 10 * TIME_SCALE * 0.95 <= time.monotonic() - started < 2 * 10 * TIME_SCALE + 2
    types = history_types(service, result["executionArn"])
    assert types.count("WaitStateEntered") == 2
    assert types.count("ChoiceStateEntered") == 3


def test_aws_sdk_errors_are_named_service_dot_error_with_exception_suffix(
    service: StepFunctionsService,
) -> None:
    definition = {
        "StartAt": "Describe",
        "States": {
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
                "Parameters": {"EndpointName": "missing"},
                "End": True,
            }
        },
    }
    result = run_machine(service, definition)

    assert result["status"] == "FAILED"
    assert result["error"] == "SageMaker.ValidationException"
    assert result["cause"].startswith(
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/missing".'
    )


# --- Map, history, listeners ------------------------------------------------------------------------------


def test_map_runs_the_iterator_per_item(service: StepFunctionsService, lambdas: FakeLambdas) -> None:
    arn = lambdas.add("square", lambda payload: payload["n"] * payload["n"])
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "ItemProcessor": {"StartAt": "Square", "States": {"Square": lambda_task(arn)}},
                "ResultPath": "$.squares",
                "End": True,
            }
        },
    }
    result = run_machine(service, definition, {"items": [{"n": 1}, {"n": 2}, {"n": 3}]})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["squares"] == [1, 4, 9]
    assert sorted(payload["n"] for payload, _ in lambdas.calls_to("square")) == [1, 2, 3]


def test_history_has_aws_event_types_in_order_with_linked_ids(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    arn = lambdas.add("echo", lambda payload: payload)
    result = run_machine(service, {"StartAt": "Echo", "States": {"Echo": lambda_task(arn)}}, {"a": 1})
    execution_arn = result["executionArn"]

    events = service.handle("GetExecutionHistory", {"executionArn": execution_arn})["events"]
    assert [event["type"] for event in events] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert [event["id"] for event in events] == list(range(1, 8))
    assert events[0]["previousEventId"] == 0
    assert all(event["previousEventId"] < event["id"] for event in events)
    assert events[1]["stateEnteredEventDetails"]["name"] == "Echo"
    assert events[2]["taskScheduledEventDetails"]["resourceType"] == "lambda"
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == {"a": 1}
    assert all(isinstance(event["timestamp"], float) for event in events)

    newest_first = service.handle(
        "GetExecutionHistory", {"executionArn": execution_arn, "reverseOrder": True, "maxResults": 3}
    )
    assert [event["id"] for event in newest_first["events"]] == [7, 6, 5]
    rest = service.handle(
        "GetExecutionHistory",
        {
            "executionArn": execution_arn,
            "reverseOrder": True,
            "maxResults": 3,
            "nextToken": newest_first["nextToken"],
        },
    )
    assert [event["id"] for event in rest["events"]] == [4, 3, 2]


def test_listener_sees_states_and_the_end_of_the_execution(
    service: StepFunctionsService, lambdas: FakeLambdas
) -> None:
    seen: list[tuple[str, str]] = []
    service.on_event(lambda execution_arn, event: seen.append((execution_arn, event["type"])))
    arn = lambdas.add("echo", lambda payload: payload)
    result = run_machine(service, {"StartAt": "Echo", "States": {"Echo": lambda_task(arn)}})

    assert {execution for execution, _ in seen} == {result["executionArn"]}
    types = [event_type for _, event_type in seen]
    assert types[0] == "ExecutionStarted"
    assert types[-1] == "ExecutionSucceeded"
    assert "TaskStateEntered" in types and "TaskStateExited" in types


def test_wait_state_runs_on_the_scaled_clock(service: StepFunctionsService) -> None:
    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 10, "End": True}}}
    started = time.monotonic()
    result = run_machine(service, definition)
    elapsed = time.monotonic() - started

    assert result["status"] == "SUCCEEDED"
    assert 10 * TIME_SCALE * 0.95 <= elapsed < 10 * TIME_SCALE + 2


def test_wait_timestamp_is_utc_whatever_the_machine_timezone(
    service: StepFunctionsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        soon = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=4)
        definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "TimestampPath": "$.at", "End": True}}}
        started = time.monotonic()
        result = run_machine(service, definition, {"at": soon.strftime("%Y-%m-%dT%H:%M:%SZ")}, timeout=10)
    finally:
        monkeypatch.undo()
        time.tzset()

    assert result["status"] == "SUCCEEDED"
    # About 3-4 s of AWS time on the scaled clock, not the 5 h offset of New York.
    assert time.monotonic() - started < 4 * TIME_SCALE + 2


# --- The deploy gate's states, as committed ----------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked_by", "status", "error"),
    [
        (None, "SUCCEEDED", None),
        ("RulesDidNotRun", "FAILED", "RulesDidNotRun"),
        ("RuleErrors", "FAILED", "RuleErrors"),
        ("RuleIssuesFound", "FAILED", "RuleIssuesFound"),
    ],
)
def test_the_gate_states_fail_the_run_with_why_it_was_blocked(
    service: StepFunctionsService, blocked_by: str | None, status: str, error: str | None
) -> None:
    from pathlib import Path

    asl = json.loads(
        (Path(__file__).resolve().parents[2] / "state_machine" / "pipeline.asl.json").read_text()
    )
    gate_states = {"RulesOk", "RulesBlocked", "RuleErrors", "RulesDidNotRun"}
    states = {name: asl["States"][name] for name in gate_states}
    # Deploy and the failure path stand in as the states they lead to.
    states["Deploy"] = {"Type": "Succeed"}
    states["NotifyFailure"] = {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    verdict = {
        "verdict": "Skipped" if blocked_by == "RulesDidNotRun" else "NoIssuesFound",
        "rules": [],
        "mode": "off",
        "gate": "rules",
        "advisories": [],
        "proceed": blocked_by is None,
        "blocked_by": blocked_by,
        "reason": f"because {blocked_by}",
    }
    result = run_machine(service, {"StartAt": "RulesOk", "States": states}, {"rules": verdict})
    assert result["status"] == status, result
    if error is not None:
        assert result["error"] == error
        assert json.loads(result["cause"])["reason"] == f"because {blocked_by}"
