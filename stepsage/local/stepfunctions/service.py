"""The local Step Functions API: state machines and executions in AWS's shapes, run by moto's interpreter."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from moto.stepfunctions.parser.asl.eval.program_state import (
    ProgramEnded,
    ProgramError,
    ProgramStopped,
    ProgramTimedOut,
)

from stepsage.local.errors import StepFunctionsError
from stepsage.local.stepfunctions import adapter
from stepsage.local.stepfunctions.definition_checks import check_transitions

LOG = logging.getLogger(__name__)

# AWS's name rule: 1-80 characters, none of whitespace, brackets, wildcards, these specials, or controls.
_INVALID_NAME_CHARACTERS: Final = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
_NAME_MAX_LENGTH: Final[int] = 80
_DEFAULT_PAGE_SIZE: Final[int] = 100
_MAX_PAGE_SIZE: Final[int] = 1000
_ROLE_ARN: Final = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_STATE_MACHINE_TYPES: Final[set[str]] = {"STANDARD", "EXPRESS"}
_EXECUTION_STATUSES: Final[set[str]] = {
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
}
_DEFAULT_LOGGING: Final[dict] = {"level": "OFF", "includeExecutionData": False}

EventCallback = Callable[[str, dict], None]


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _epoch(moment: datetime.datetime) -> float:
    # The JSON protocol carries timestamps as epoch seconds.
    return moment.timestamp()


@dataclass
class _StateMachine:
    arn: str
    name: str
    definition: str
    role_arn: str
    type: str
    created: datetime.datetime
    updated: datetime.datetime
    logging_configuration: dict
    tags: dict[str, str]
    revision_id: str


@dataclass
class _Execution:
    arn: str
    name: str
    state_machine: _StateMachine  # a snapshot: updates to the machine do not touch running executions
    input: str
    started: datetime.datetime
    status: str = "RUNNING"
    stopped: datetime.datetime | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    env: Any = None
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)


class StepFunctionsService:
    """Serves the Step Functions JSON API in-process; executions run on background threads."""

    def __init__(
        self,
        invoke_lambda: Callable[[str, dict], Any],
        sagemaker: adapter.SageMakerHandler,
        *,
        aws_endpoint_url: str | None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        time_scale: float = 1.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, not {time_scale}")
        self.region = region
        self.account_id = account_id
        self._integrations = adapter.Integrations(
            invoke_lambda=invoke_lambda,
            sagemaker=sagemaker,
            aws_endpoint_url=aws_endpoint_url,
            account_id=account_id,
            region=region,
            time_scale=time_scale,
        )
        adapter.install(self._integrations)
        self._lock = threading.RLock()
        self._state_machines: dict[str, _StateMachine] = {}
        self._executions: dict[str, _Execution] = {}
        self._listeners: list[EventCallback] = []
        self._closed = False

    # --- entry points --------------------------------------------------------------------------------

    def handle(self, operation: str, params: dict) -> dict:
        """Serve one API call (`operation` as botocore names it); raises StepFunctionsError."""
        handler = self._OPERATIONS.get(operation)
        if handler is None:
            raise StepFunctionsError("UnknownOperationException", f"Unknown operation {operation}", 400)
        return handler(self, params or {})

    def on_event(self, callback: EventCallback) -> None:
        """Call `callback(execution_arn, event)` for every history event, as it happens (live progress)."""
        with self._lock:
            self._listeners.append(callback)

    def wait(self, execution_arn: str, timeout: float | None = None) -> dict:
        """Block until the execution ends; return its DescribeExecution output. Raises TimeoutError."""
        execution = self._execution(execution_arn)
        if not execution.done.wait(timeout):
            raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout} s")
        return self._describe_execution({"executionArn": execution_arn})

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every running execution (status ABORTED) and wait briefly for their threads."""
        with self._lock:
            self._closed = True
            running = [e for e in self._executions.values() if e.status == "RUNNING"]
        for execution in running:
            self._stop(execution, error="States.Runtime", cause="The local Step Functions service shut down.")
        deadline = _now() + datetime.timedelta(seconds=timeout)
        for execution in running:
            if execution.thread is not None:
                execution.thread.join(max(0.0, (deadline - _now()).total_seconds()))

    # --- validation ----------------------------------------------------------------------------------

    @staticmethod
    def _required(params: dict, key: str) -> Any:
        value = params.get(key)
        if value is None:
            raise StepFunctionsError(
                "ValidationException",
                f"1 validation error detected: Value null at '{key}' failed to satisfy constraint: "
                "Member must not be null",
            )
        return value

    @staticmethod
    def _check_name(name: Any) -> str:
        if (
            not isinstance(name, str)
            or not 1 <= len(name) <= _NAME_MAX_LENGTH
            or _INVALID_NAME_CHARACTERS.search(name)
        ):
            raise StepFunctionsError("InvalidName", f"Invalid Name: '{name}'")
        return name

    def _state_machine_arn(self, name: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{name}"

    def _execution_arn(self, state_machine_name: str, name: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:execution:{state_machine_name}:{name}"

    def _parse_arn(self, arn: Any, resource_type: str) -> list[str]:
        """Split `arn:aws:states:region:account:<resource_type>:...`; InvalidArn when it is not one."""
        parts = arn.split(":") if isinstance(arn, str) else []
        expected_parts = 7 if resource_type == "stateMachine" else 8
        if (
            len(parts) != expected_parts
            or parts[0] != "arn"
            or not parts[1].startswith("aws")
            or parts[2] != "states"
            or not parts[3]
            or not re.fullmatch(r"\d{12}", parts[4])
        ):
            raise StepFunctionsError("InvalidArn", f"Invalid Arn: '{arn}'")
        if parts[5] != resource_type:
            raise StepFunctionsError(
                "InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {parts[5]}'"
            )
        return parts

    def _state_machine(self, arn: Any) -> _StateMachine:
        self._parse_arn(arn, "stateMachine")
        with self._lock:
            state_machine = self._state_machines.get(arn)
        if state_machine is None:
            raise StepFunctionsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return state_machine

    def _execution(self, arn: Any) -> _Execution:
        self._parse_arn(arn, "execution")
        with self._lock:
            execution = self._executions.get(arn)
        if execution is None:
            raise StepFunctionsError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return execution

    @staticmethod
    def _check_definition(definition: Any) -> str:
        if not isinstance(definition, str):
            raise StepFunctionsError("InvalidDefinition", "Invalid State Machine Definition: not a string")
        try:
            document = json.loads(definition)
        except json.JSONDecodeError as error:
            raise StepFunctionsError(
                "InvalidDefinition", f"Invalid State Machine Definition: 'INVALID_JSON_DESCRIPTION: {error}'"
            ) from error
        problems = check_transitions(document)
        if problems:
            raise StepFunctionsError(
                "InvalidDefinition", f"Invalid State Machine Definition: '{', '.join(problems)}'"
            )
        try:
            adapter.parse_definition(definition)
        except adapter.DefinitionError as error:
            raise StepFunctionsError(
                "InvalidDefinition", f"Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: {error}'"
            ) from error
        return definition

    @staticmethod
    def _check_role(role_arn: Any) -> str:
        if not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn):
            raise StepFunctionsError("InvalidArn", f"Invalid Arn: '{role_arn}'")
        return role_arn

    @staticmethod
    def _page(items: list, params: dict) -> tuple[list, str | None]:
        max_results = params.get("maxResults") or _DEFAULT_PAGE_SIZE
        if not isinstance(max_results, int) or not 0 <= max_results <= _MAX_PAGE_SIZE:
            raise StepFunctionsError(
                "ValidationException",
                f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy "
                f"constraint: Member must have value less than or equal to {_MAX_PAGE_SIZE}",
            )
        start = 0
        token = params.get("nextToken")
        if token is not None:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode())
            except (ValueError, UnicodeDecodeError, AttributeError) as error:
                raise StepFunctionsError("InvalidToken", f"Invalid Token: '{token}'") from error
        end = start + max_results
        next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
        return items[start:end], next_token

    # --- state machines ------------------------------------------------------------------------------

    def _create_state_machine(self, params: dict) -> dict:
        name = self._check_name(self._required(params, "name"))
        definition = self._check_definition(self._required(params, "definition"))
        role_arn = self._check_role(self._required(params, "roleArn"))
        machine_type = params.get("type", "STANDARD")
        if machine_type not in _STATE_MACHINE_TYPES:
            raise StepFunctionsError(
                "ValidationException",
                f"1 validation error detected: Value '{machine_type}' at 'type' failed to satisfy "
                "constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]",
            )
        arn = self._state_machine_arn(name)
        tags = {tag["key"]: tag["value"] for tag in params.get("tags") or []}
        logging_configuration = params.get("loggingConfiguration") or dict(_DEFAULT_LOGGING)
        with self._lock:
            existing = self._state_machines.get(arn)
            if existing is not None:
                # AWS makes CreateStateMachine idempotent for an identical request, else it conflicts.
                if (existing.definition, existing.role_arn, existing.type) == (
                    definition,
                    role_arn,
                    machine_type,
                ):
                    return {"stateMachineArn": arn, "creationDate": _epoch(existing.created)}
                raise StepFunctionsError(
                    "StateMachineAlreadyExists", f"State Machine Already Exists: '{arn}'"
                )
            now = _now()
            self._state_machines[arn] = _StateMachine(
                arn=arn,
                name=name,
                definition=definition,
                role_arn=role_arn,
                type=machine_type,
                created=now,
                updated=now,
                logging_configuration=logging_configuration,
                tags=tags,
                revision_id=str(uuid.uuid4()),
            )
        return {"stateMachineArn": arn, "creationDate": _epoch(now)}

    def _describe_state_machine(self, params: dict) -> dict:
        machine = self._state_machine(self._required(params, "stateMachineArn"))
        return {
            "stateMachineArn": machine.arn,
            "name": machine.name,
            "status": "ACTIVE",
            "definition": machine.definition,
            "roleArn": machine.role_arn,
            "type": machine.type,
            "creationDate": _epoch(machine.created),
            "loggingConfiguration": machine.logging_configuration,
            "tracingConfiguration": {"enabled": False},
            "revisionId": machine.revision_id,
        }

    def _list_state_machines(self, params: dict) -> dict:
        with self._lock:
            machines = sorted(self._state_machines.values(), key=lambda m: m.created)
        page, next_token = self._page(machines, params)
        response: dict[str, Any] = {
            "stateMachines": [
                {
                    "stateMachineArn": m.arn,
                    "name": m.name,
                    "type": m.type,
                    "creationDate": _epoch(m.created),
                }
                for m in page
            ]
        }
        if next_token:
            response["nextToken"] = next_token
        return response

    def _update_state_machine(self, params: dict) -> dict:
        machine = self._state_machine(self._required(params, "stateMachineArn"))
        definition = params.get("definition")
        role_arn = params.get("roleArn")
        logging_configuration = params.get("loggingConfiguration")
        if definition is None and role_arn is None and logging_configuration is None:
            raise StepFunctionsError(
                "MissingRequiredParameter",
                "Either the definition, the role ARN, the LoggingConfiguration, "
                "or the TracingConfiguration must be specified",
            )
        if definition is not None:
            self._check_definition(definition)
        if role_arn is not None:
            self._check_role(role_arn)
        with self._lock:
            if definition is not None:
                machine.definition = definition
            if role_arn is not None:
                machine.role_arn = role_arn
            if logging_configuration is not None:
                machine.logging_configuration = logging_configuration
            machine.updated = _now()
            machine.revision_id = str(uuid.uuid4())
        return {"updateDate": _epoch(machine.updated), "revisionId": machine.revision_id}

    def _delete_state_machine(self, params: dict) -> dict:
        arn = self._required(params, "stateMachineArn")
        self._parse_arn(arn, "stateMachine")
        with self._lock:
            machine = self._state_machines.pop(arn, None)
            running = [
                e for e in self._executions.values() if e.state_machine.arn == arn and e.status == "RUNNING"
            ]
        if machine is not None:
            for execution in running:
                self._stop(execution, error="States.Runtime", cause="The state machine was deleted.")
        return {}

    def _describe_state_machine_for_execution(self, params: dict) -> dict:
        execution = self._execution(self._required(params, "executionArn"))
        machine = execution.state_machine
        return {
            "stateMachineArn": machine.arn,
            "name": machine.name,
            "definition": machine.definition,
            "roleArn": machine.role_arn,
            "updateDate": _epoch(machine.updated),
            "loggingConfiguration": machine.logging_configuration,
            "tracingConfiguration": {"enabled": False},
            "revisionId": machine.revision_id,
        }

    def _list_tags_for_resource(self, params: dict) -> dict:
        machine = self._state_machine(self._required(params, "resourceArn"))
        return {"tags": [{"key": k, "value": v} for k, v in machine.tags.items()]}

    def _tag_resource(self, params: dict) -> dict:
        machine = self._state_machine(self._required(params, "resourceArn"))
        with self._lock:
            machine.tags.update({tag["key"]: tag["value"] for tag in self._required(params, "tags")})
        return {}

    # --- executions ----------------------------------------------------------------------------------

    def _start_execution(self, params: dict) -> dict:
        machine = self._state_machine(self._required(params, "stateMachineArn"))
        name = self._check_name(params.get("name") or str(uuid.uuid4()))
        execution_input = params.get("input")
        if execution_input is None:
            execution_input = "{}"
        try:
            parsed_input = json.loads(execution_input)
        except (TypeError, json.JSONDecodeError) as error:
            raise StepFunctionsError(
                "InvalidExecutionInput", f"Invalid State Machine Execution Input: '{error}'"
            ) from error
        arn = self._execution_arn(machine.name, name)
        definition = machine.definition
        program = adapter.parse_definition(definition)
        with self._lock:
            if self._closed:
                raise StepFunctionsError(
                    "ServiceUnavailable", "The local Step Functions service is shut down", 503
                )
            existing = self._executions.get(arn)
            if existing is not None:
                # AWS: the same name and input while RUNNING returns the first execution; else it conflicts.
                if existing.status == "RUNNING" and existing.input == execution_input:
                    return {"executionArn": existing.arn, "startDate": _epoch(existing.started)}
                raise StepFunctionsError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
            snapshot = _StateMachine(
                **{**machine.__dict__, "definition": definition, "tags": dict(machine.tags)}
            )
            execution = _Execution(
                arn=arn, name=name, state_machine=snapshot, input=execution_input, started=_now()
            )
            context = adapter.ExecutionContext(
                execution_arn=arn,
                execution_name=name,
                execution_input=parsed_input,
                start_time=execution.started,
                role_arn=snapshot.role_arn,
                state_machine_arn=snapshot.arn,
                state_machine_name=snapshot.name,
                state_machine_type=snapshot.type,
            )
            execution.env = adapter.new_environment(program, context, self._integrations, self._notify)
            self._executions[arn] = execution
        execution.thread = threading.Thread(
            target=self._run, args=(execution, program, context), name=f"sfn-{name}", daemon=True
        )
        execution.thread.start()
        return {"executionArn": arn, "startDate": _epoch(execution.started)}

    def _run(self, execution: _Execution, program: Any, context: adapter.ExecutionContext) -> None:
        try:
            adapter.run_program(program, execution.env, context)
            state = execution.env.program_state()
        except Exception as error:
            LOG.exception("execution %s crashed in the interpreter", execution.arn)
            state = ProgramError(
                error={"error": "States.Runtime", "cause": f"{type(error).__name__}: {error}"}
            )
        with self._lock:
            if execution.status == "RUNNING":
                execution.stopped = _now()
                if isinstance(state, ProgramEnded):
                    execution.status = "SUCCEEDED"
                    execution.output = json.dumps(execution.env.states.get_input(), separators=(",", ":"))
                elif isinstance(state, ProgramError):
                    execution.status = "FAILED"
                    details = state.error or {}
                    execution.error = details.get("error")
                    execution.cause = details.get("cause")
                elif isinstance(state, ProgramTimedOut):
                    execution.status = "TIMED_OUT"
                elif isinstance(state, ProgramStopped):
                    execution.status = "ABORTED"
                else:
                    execution.status = "FAILED"
                    execution.error = "States.Runtime"
                    execution.cause = f"unexpected end state {type(state).__name__}"
        execution.done.set()

    def _notify(self, execution_arn: str, event: dict) -> None:
        with self._lock:
            listeners = list(self._listeners)
        shaped = _history_event(event)
        for listener in listeners:
            try:
                listener(execution_arn, shaped)
            except Exception:
                LOG.exception("a Step Functions event listener failed")

    def _stop(self, execution: _Execution, error: str | None, cause: str | None) -> datetime.datetime:
        with self._lock:
            if execution.status != "RUNNING":
                return execution.stopped or _now()
            execution.status = "ABORTED"
            execution.stopped = _now()
            execution.error = error
            execution.cause = cause
        if execution.env is not None:
            execution.env.set_stop(stop_date=execution.stopped, cause=cause, error=error)
            # moto signals a stop by pulsing this event (set, then clear at once): a Wait state that was not
            # yet blocked on it would sleep its full time. Left set, every later wait returns at once.
            execution.env.program_state_event.set()
        if execution.thread is None or not execution.thread.is_alive():
            execution.done.set()
        return execution.stopped

    def _stop_execution(self, params: dict) -> dict:
        execution = self._execution(self._required(params, "executionArn"))
        stopped = self._stop(execution, error=params.get("error"), cause=params.get("cause"))
        return {"stopDate": _epoch(stopped)}

    def _describe_execution(self, params: dict) -> dict:
        execution = self._execution(self._required(params, "executionArn"))
        with self._lock:
            response: dict[str, Any] = {
                "executionArn": execution.arn,
                "stateMachineArn": execution.state_machine.arn,
                "name": execution.name,
                "status": execution.status,
                "startDate": _epoch(execution.started),
                "input": execution.input,
                "inputDetails": {"included": True},
                "redriveCount": 0,
                "redriveStatus": "NOT_REDRIVABLE",
            }
            if execution.stopped is not None:
                response["stopDate"] = _epoch(execution.stopped)
            if execution.status == "SUCCEEDED":
                response["output"] = execution.output
                response["outputDetails"] = {"included": True}
            if execution.error is not None:
                response["error"] = execution.error
            if execution.cause is not None:
                response["cause"] = execution.cause
        return response

    def _list_executions(self, params: dict) -> dict:
        arn = self._required(params, "stateMachineArn")
        self._state_machine(arn)
        status_filter = params.get("statusFilter")
        if status_filter is not None and status_filter not in _EXECUTION_STATUSES:
            raise StepFunctionsError(
                "ValidationException",
                f"1 validation error detected: Value '{status_filter}' at 'statusFilter' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(sorted(_EXECUTION_STATUSES))}]",
            )
        with self._lock:
            executions = [
                e
                for e in self._executions.values()
                if e.state_machine.arn == arn and (status_filter is None or e.status == status_filter)
            ]
            # Newest first, as AWS lists them.
            executions.sort(key=lambda e: e.started, reverse=True)
            items = []
            for e in executions:
                item: dict[str, Any] = {
                    "executionArn": e.arn,
                    "stateMachineArn": e.state_machine.arn,
                    "name": e.name,
                    "status": e.status,
                    "startDate": _epoch(e.started),
                    "redriveCount": 0,
                }
                if e.stopped is not None:
                    item["stopDate"] = _epoch(e.stopped)
                items.append(item)
        page, next_token = self._page(items, params)
        response: dict[str, Any] = {"executions": page}
        if next_token:
            response["nextToken"] = next_token
        return response

    def _get_execution_history(self, params: dict) -> dict:
        execution = self._execution(self._required(params, "executionArn"))
        events = [_history_event(e) for e in execution.env.event_manager.get_event_history()]
        if params.get("includeExecutionData") is False:
            for event in events:
                for key, details in event.items():
                    if key.endswith("EventDetails") and isinstance(details, dict):
                        for data_key in ("input", "inputDetails", "output", "outputDetails"):
                            details.pop(data_key, None)
        if params.get("reverseOrder"):
            events.reverse()
        page, next_token = self._page(events, params)
        response: dict[str, Any] = {"events": page}
        if next_token:
            response["nextToken"] = next_token
        return response

    _OPERATIONS: Final[dict[str, Callable[[StepFunctionsService, dict], dict]]] = {
        "CreateStateMachine": _create_state_machine,
        "DescribeStateMachine": _describe_state_machine,
        "ListStateMachines": _list_state_machines,
        "UpdateStateMachine": _update_state_machine,
        "DeleteStateMachine": _delete_state_machine,
        "DescribeStateMachineForExecution": _describe_state_machine_for_execution,
        "ListTagsForResource": _list_tags_for_resource,
        "TagResource": _tag_resource,
        "StartExecution": _start_execution,
        "StopExecution": _stop_execution,
        "DescribeExecution": _describe_execution,
        "ListExecutions": _list_executions,
        "GetExecutionHistory": _get_execution_history,
    }


def _history_event(event: dict) -> dict:
    """moto's history event, JSON-ready: the enum type as its string, the ISO timestamp as epoch seconds."""
    shaped = json.loads(json.dumps(event, default=str))
    shaped["type"] = str(getattr(event["type"], "value", event["type"]))
    timestamp = event.get("timestamp")
    if isinstance(timestamp, str):
        shaped["timestamp"] = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    elif isinstance(timestamp, datetime.datetime):
        shaped["timestamp"] = timestamp.timestamp()
    return shaped
