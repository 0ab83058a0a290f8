"""The local Step Functions API: AWS's shapes, validation errors and StartExecution idempotency."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from stepsage.local.errors import StepFunctionsError
from stepsage.local.stepfunctions import StepFunctionsService
from stepsage.local.stepfunctions.definition_checks import check_transitions

pytestmark = pytest.mark.unit

ROLE = "arn:aws:iam::123456789012:role/StepFunctionsRole"
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
# Runs until stopped: the service's clock is real time here.
LONG_WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}


class NoSageMaker:
    def handle(self, operation: str, params: dict) -> dict:
        raise AssertionError(operation)


def no_lambda(function_arn: str, payload: dict) -> Any:
    raise AssertionError(function_arn)


@pytest.fixture
def service() -> Iterator[StepFunctionsService]:
    local = StepFunctionsService(no_lambda, NoSageMaker(), aws_endpoint_url=None)
    yield local
    local.shutdown()


def create(service: StepFunctionsService, name: str = "machine", definition: dict = PASS) -> str:
    response = service.handle(
        "CreateStateMachine", {"name": name, "definition": json.dumps(definition), "roleArn": ROLE}
    )
    return str(response["stateMachineArn"])


def error_code(service: StepFunctionsService, operation: str, params: dict) -> str:
    with pytest.raises(StepFunctionsError) as caught:
        service.handle(operation, params)
    assert caught.value.status_code == 400
    return caught.value.code


def test_state_machine_lifecycle_has_aws_shapes(service: StepFunctionsService) -> None:
    arn = create(service)
    assert arn == "arn:aws:states:us-east-1:123456789012:stateMachine:machine"

    described = service.handle("DescribeStateMachine", {"stateMachineArn": arn})
    assert described["name"] == "machine"
    assert described["status"] == "ACTIVE"
    assert described["type"] == "STANDARD"
    assert described["roleArn"] == ROLE
    assert json.loads(described["definition"]) == PASS
    assert isinstance(described["creationDate"], float)

    listed = service.handle("ListStateMachines", {})["stateMachines"]
    assert [(m["name"], m["stateMachineArn"], m["type"]) for m in listed] == [("machine", arn, "STANDARD")]

    new_definition = {"StartAt": "Q", "States": {"Q": {"Type": "Succeed"}}}
    updated = service.handle(
        "UpdateStateMachine", {"stateMachineArn": arn, "definition": json.dumps(new_definition)}
    )
    assert "updateDate" in updated
    assert (
        json.loads(service.handle("DescribeStateMachine", {"stateMachineArn": arn})["definition"])
        == new_definition
    )

    service.handle("DeleteStateMachine", {"stateMachineArn": arn})
    assert error_code(service, "DescribeStateMachine", {"stateMachineArn": arn}) == "StateMachineDoesNotExist"


@pytest.mark.parametrize(
    "name", ["", "a" * 81, "has space", "slash/name", "brace{", "star*", "colon:x", "tab\tx"]
)
def test_invalid_names_are_rejected(service: StepFunctionsService, name: str) -> None:
    params = {"name": name, "definition": json.dumps(PASS), "roleArn": ROLE}
    assert error_code(service, "CreateStateMachine", params) == "InvalidName"


def test_names_aws_accepts(service: StepFunctionsService) -> None:
    arn = create(service, name="a" * 80)
    execution = service.handle("StartExecution", {"stateMachineArn": arn, "name": "run-1_A.b"})
    assert execution["executionArn"].endswith(":execution:" + "a" * 80 + ":run-1_A.b")


@pytest.mark.parametrize(
    "arn",
    [
        "not-an-arn",
        "arn:aws:states:us-east-1:123:stateMachine:m",
        "arn:aws:lambda:us-east-1:123456789012:function:m",
        "arn:aws:states:us-east-1:123456789012:execution:m:e",
    ],
)
def test_malformed_state_machine_arns_are_invalid_arn(service: StepFunctionsService, arn: str) -> None:
    assert error_code(service, "DescribeStateMachine", {"stateMachineArn": arn}) == "InvalidArn"


def test_unknown_resources(service: StepFunctionsService) -> None:
    missing_machine = "arn:aws:states:us-east-1:123456789012:stateMachine:nope"
    missing_execution = "arn:aws:states:us-east-1:123456789012:execution:nope:e"
    assert (
        error_code(service, "StartExecution", {"stateMachineArn": missing_machine})
        == "StateMachineDoesNotExist"
    )
    assert (
        error_code(service, "DescribeExecution", {"executionArn": missing_execution})
        == "ExecutionDoesNotExist"
    )
    assert (
        error_code(service, "GetExecutionHistory", {"executionArn": missing_execution})
        == "ExecutionDoesNotExist"
    )
    assert error_code(service, "DescribeExecution", {"executionArn": missing_machine}) == "InvalidArn"


@pytest.mark.parametrize(
    ("definition", "fragment"),
    [
        ("{not json", "INVALID_JSON_DESCRIPTION"),
        (
            json.dumps({"StartAt": "Missing", "States": {"P": {"Type": "Pass", "End": True}}}),
            "Missing 'Next' target",
        ),
        (json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Gone"}}}), "Gone"),
        (json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass"}}}), "'Next' or 'End'"),
        (
            json.dumps({"StartAt": "P", "States": {"P": {"Type": "NoSuchType", "End": True}}}),
            "SCHEMA_VALIDATION",
        ),
        (
            json.dumps(
                {
                    "StartAt": "T",
                    "States": {
                        "T": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sagemaker:createEndpoint.sync",
                            "End": True,
                        }
                    },
                }
            ),
            "SCHEMA_VALIDATION",
        ),
    ],
)
def test_invalid_definitions(service: StepFunctionsService, definition: str, fragment: str) -> None:
    with pytest.raises(StepFunctionsError) as caught:
        service.handle("CreateStateMachine", {"name": "m", "definition": definition, "roleArn": ROLE})
    assert caught.value.code == "InvalidDefinition"
    assert fragment in caught.value.message


def test_validation_exceptions(service: StepFunctionsService) -> None:
    assert error_code(service, "CreateStateMachine", {"name": "m", "definition": json.dumps(PASS)}) == (
        "ValidationException"
    )
    params = {"name": "m", "definition": json.dumps(PASS), "roleArn": ROLE, "type": "FAST"}
    assert error_code(service, "CreateStateMachine", params) == "ValidationException"
    arn = create(service)
    assert error_code(service, "ListExecutions", {"stateMachineArn": arn, "statusFilter": "DONE"}) == (
        "ValidationException"
    )
    assert (
        error_code(service, "ListExecutions", {"stateMachineArn": arn, "maxResults": 5000})
        == "ValidationException"
    )
    assert (
        error_code(service, "StartExecution", {"stateMachineArn": arn, "input": "{bad"})
        == "InvalidExecutionInput"
    )
    assert (
        error_code(service, "CreateStateMachine", {**params, "type": "STANDARD", "roleArn": "role"})
        == "InvalidArn"
    )


def test_start_execution_is_idempotent_only_while_running_with_the_same_input(
    service: StepFunctionsService,
) -> None:
    arn = create(service, definition=LONG_WAIT)
    first = service.handle("StartExecution", {"stateMachineArn": arn, "name": "dup", "input": '{"k": 1}'})
    again = service.handle("StartExecution", {"stateMachineArn": arn, "name": "dup", "input": '{"k": 1}'})
    assert again == first

    other_input = {"stateMachineArn": arn, "name": "dup", "input": '{"k": 2}'}
    assert error_code(service, "StartExecution", other_input) == "ExecutionAlreadyExists"

    service.handle("StopExecution", {"executionArn": first["executionArn"]})
    same_input_after_stop = {"stateMachineArn": arn, "name": "dup", "input": '{"k": 1}'}
    assert error_code(service, "StartExecution", same_input_after_stop) == "ExecutionAlreadyExists"
    assert len(service.handle("ListExecutions", {"stateMachineArn": arn})["executions"]) == 1


def test_executions_describe_list_and_stop(service: StepFunctionsService) -> None:
    waiting = create(service, "waiting", LONG_WAIT)
    quick = create(service, "quick", PASS)
    done = service.handle("StartExecution", {"stateMachineArn": quick, "name": "q", "input": '{"x": 1}'})
    described = service.wait(done["executionArn"], 10)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"x": 1}
    assert described["input"] == '{"x": 1}'
    assert described["stateMachineArn"] == quick
    assert described["stopDate"] >= described["startDate"]

    runs = [service.handle("StartExecution", {"stateMachineArn": waiting, "name": f"w{i}"}) for i in range(3)]
    service.handle(
        "StopExecution", {"executionArn": runs[0]["executionArn"], "error": "Manual", "cause": "test"}
    )
    stopped = service.wait(runs[0]["executionArn"], 10)
    assert (stopped["status"], stopped["error"], stopped["cause"]) == ("ABORTED", "Manual", "test")

    running = service.handle("ListExecutions", {"stateMachineArn": waiting, "statusFilter": "RUNNING"})[
        "executions"
    ]
    assert sorted(e["name"] for e in running) == ["w1", "w2"]
    first_page = service.handle("ListExecutions", {"stateMachineArn": waiting, "maxResults": 2})
    second_page = service.handle(
        "ListExecutions", {"stateMachineArn": waiting, "maxResults": 2, "nextToken": first_page["nextToken"]}
    )
    names = [e["name"] for e in first_page["executions"] + second_page["executions"]]
    assert sorted(names) == ["w0", "w1", "w2"]
    assert "nextToken" not in second_page

    history = service.handle("GetExecutionHistory", {"executionArn": runs[0]["executionArn"]})["events"]
    assert history[-1]["type"] == "ExecutionAborted"

    for_execution = service.handle(
        "DescribeStateMachineForExecution", {"executionArn": runs[1]["executionArn"]}
    )
    assert for_execution["name"] == "waiting"
    assert json.loads(for_execution["definition"]) == LONG_WAIT


def test_update_does_not_change_a_running_execution(service: StepFunctionsService) -> None:
    arn = create(service, definition=LONG_WAIT)
    run = service.handle("StartExecution", {"stateMachineArn": arn, "name": "r"})
    service.handle("UpdateStateMachine", {"stateMachineArn": arn, "definition": json.dumps(PASS)})
    for_execution = service.handle("DescribeStateMachineForExecution", {"executionArn": run["executionArn"]})
    assert json.loads(for_execution["definition"]) == LONG_WAIT


def test_shutdown_aborts_running_executions() -> None:
    local = StepFunctionsService(no_lambda, NoSageMaker(), aws_endpoint_url=None)
    arn = create(local, definition=LONG_WAIT)
    run = local.handle("StartExecution", {"stateMachineArn": arn, "name": "r"})
    local.shutdown()
    assert local.wait(run["executionArn"], 5)["status"] == "ABORTED"
    with pytest.raises(StepFunctionsError):
        local.handle("StartExecution", {"stateMachineArn": arn, "name": "after"})


def test_unknown_operation(service: StepFunctionsService) -> None:
    assert error_code(service, "SendTaskSuccessMaybe", {}) == "UnknownOperationException"


def test_transition_checks_accept_nested_machines() -> None:
    definition = {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Oops"}],
                "Next": "Pick",
            },
            "Pick": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "Done"}],
                "Default": "Oops",
            },
            "Oops": {"Type": "Fail"},
            "Done": {"Type": "Succeed"},
        },
    }
    assert check_transitions(definition) == []


def test_transition_checks_find_problems_inside_branches_and_unreachable_states() -> None:
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}},
                "End": True,
            },
            "Orphan": {"Type": "Succeed"},
        },
    }
    problems = check_transitions(definition)
    assert any("Missing 'Next' target: Y at /States/Each/ItemProcessor/States/X/Next" in p for p in problems)
    assert any('State "Orphan" is not reachable' in p for p in problems)
