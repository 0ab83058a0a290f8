"""Every extension stepsage makes to moto's Step Functions interpreter, kept in this one module."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import (
    ExecutionFailedEventDetails,
    ExecutionStartedEventDetails,
    HistoryEventExecutionDataDetails,
    HistoryEventType,
    StateMachineType,
    TaskFailedEventDetails,
)
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.common.retry.max_attempts_decl import MaxAttemptsOutcome
from moto.stepfunctions.parser.asl.component.common.retry.retrier_outcome import RetrierOutcome
from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringJSONata
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
    lambda_eval_utils,
    state_task_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as moto_callback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
    ResourceRuntimePart,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.evaluation_details import AWSExecutionDetails
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext, EventManager
from moto.stepfunctions.parser.asl.eval.states import ContextObjectData, ExecutionData, StateMachineData
from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import boto_client as moto_boto_client
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from stepsage.local.errors import LambdaFunctionError, SageMakerError, ServiceError

LOG = logging.getLogger(__name__)

# AWS polls a running SageMaker job through EventBridge; locally the Describe call is cheap, so poll often.
SYNC_POLL_SECONDS: Final[float] = 0.5
# Scaled waits never drop below this, so a scaled-down loop still yields the CPU between polls.
MIN_SCALED_SECONDS: Final[float] = 0.001


class SageMakerHandler(Protocol):
    def handle(self, operation: str, params: dict) -> dict: ...


EventListener = Callable[[str, dict], None]


@dataclass(frozen=True)
class Integrations:
    """What one StepFunctionsService lends its executions: where Tasks go, and how fast time runs."""

    invoke_lambda: Callable[[str, dict], Any]
    sagemaker: SageMakerHandler
    aws_endpoint_url: str | None
    account_id: str
    region: str
    time_scale: float = 1.0

    def scaled(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        return max(seconds * self.time_scale, MIN_SCALED_SECONDS)


class LocalExecutionDetails(AWSExecutionDetails):
    """moto hands this object, unchanged, to every frame of an execution: it carries the Integrations."""

    def __init__(self, account: str, region: str, role_arn: str, integrations: Integrations) -> None:
        super().__init__(account=account, region=region, role_arn=role_arn)
        self.integrations = integrations


@dataclass
class LocalStateCredentials(StateCredentials):
    """moto passes credentials, not the env, down to Lambda and boto calls: the Integrations ride on them."""

    integrations: Integrations | None = None


# Used by the few moto calls that build their own credentials (Map's S3 ItemReader and ResultWriter).
_latest_integrations: Integrations | None = None


def integrations_of(env: Environment) -> Integrations | None:
    details = env.aws_execution_details
    return details.integrations if isinstance(details, LocalExecutionDetails) else None


def _integrations_of_credentials(state_credentials: Any) -> Integrations | None:
    integrations = getattr(state_credentials, "integrations", None)
    return integrations if integrations is not None else _latest_integrations


# --- Task credentials ---------------------------------------------------------------------------

_original_eval_state_credentials = StateTask._eval_state_credentials


def _eval_state_credentials(self: StateTask, env: Environment) -> StateCredentials:
    credentials = _original_eval_state_credentials(self, env)
    integrations = integrations_of(env)
    if integrations is None:
        return credentials
    return LocalStateCredentials(role_arn=credentials.role_arn, integrations=integrations)


# --- boto clients for other services (SNS Notify, aws-sdk:*) ---------------------------------------

_original_boto_client_for = moto_boto_client.boto_client_for


def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    integrations = _integrations_of_credentials(state_credentials)
    if integrations is None or integrations.aws_endpoint_url is None:
        return _original_boto_client_for(region=region, service=service, state_credentials=state_credentials)
    # boto3's stubs only type literal service names.
    make_client: Callable[..., Any] = boto3.client
    return make_client(
        service_name=service,
        region_name=region,
        endpoint_url=integrations.aws_endpoint_url,
        # The local cloud checks no signatures; fixed fake keys keep boto3 from searching for real ones.
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            parameter_validation=False,
            retries={"max_attempts": 0, "total_max_attempts": 1},
            connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
        ),
    )


# --- Lambda ------------------------------------------------------------------------------------------

_original_invoke_lambda_function = lambda_eval_utils._invoke_lambda_function


def _function_arn(function_name: str, qualifier: str | None, integrations: Integrations, region: str) -> str:
    if function_name.startswith("arn:"):
        arn = function_name
    elif ":" in function_name:
        # "account:function:name" or "name:alias", both partial forms Lambda accepts.
        parts = function_name.split(":")
        if len(parts) >= 3 and parts[1] == "function":
            arn = f"arn:aws:lambda:{region}:{function_name}"
        else:
            arn = f"arn:aws:lambda:{region}:{integrations.account_id}:function:{function_name}"
    else:
        arn = f"arn:aws:lambda:{region}:{integrations.account_id}:function:{function_name}"
    if qualifier and not arn.endswith(f":{qualifier}"):
        arn = f"{arn}:{qualifier}"
    return arn


def _client_error(code: str, message: str, status_code: int, operation: str) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status_code, "RequestId": str(uuid.uuid4())},
    }
    return ClientError(response, operation)


def _invoke_lambda_function(parameters: dict, region: str, state_credentials: Any) -> dict:
    integrations = getattr(state_credentials, "integrations", None)
    if integrations is None:
        return _original_invoke_lambda_function(parameters, region, state_credentials)
    function_arn = _function_arn(
        parameters["FunctionName"], parameters.get("Qualifier"), integrations, region
    )
    raw_payload = parameters.get("Payload")
    payload = json.loads(raw_payload) if raw_payload else {}
    try:
        result = integrations.invoke_lambda(function_arn, payload)
    except LambdaFunctionError as error:
        # The function itself raised: Lambda answers 200 with FunctionError set and the error as payload,
        # and Step Functions names the state's error after errorType.
        return {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "ExecutedVersion": "$LATEST",
            "Payload": {
                "errorMessage": error.error_message,
                "errorType": error.error_type,
                "requestId": str(uuid.uuid4()),
                "stackTrace": error.stack_trace,
            },
        }
    except ServiceError as error:
        raise _client_error(error.code, error.message, error.status_code, "Invoke") from error
    except Exception as error:
        # Anything else is the Lambda service failing, not the function: AWS reports Lambda.ServiceException.
        LOG.exception("invoking %s failed outside the function", function_arn)
        raise _client_error("ServiceException", f"{type(error).__name__}: {error}", 500, "Invoke") from error
    return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": _json_safe(result, _iso_timestamp)}


# --- JSON shapes ----------------------------------------------------------------------------------------


def _epoch_millis(value: datetime.datetime | datetime.date) -> Any:
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time(), tzinfo=datetime.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return int(value.timestamp() * 1000)


def _iso_timestamp(value: datetime.datetime | datetime.date) -> Any:
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.isoformat()


def _json_safe(value: Any, timestamp: Callable[[datetime.datetime | datetime.date], Any]) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item, timestamp) for key, item in value.items() if key != "ResponseMetadata"}
    if isinstance(value, list | tuple):
        return [_json_safe(item, timestamp) for item in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return timestamp(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _pascal_case(api_action: str) -> str:
    return api_action[:1].upper() + api_action[1:]


# --- SageMaker, optimized integration (arn:aws:states:::sagemaker:*) ----------------------------------

# Step Functions' optimized SageMaker integration: these actions, and .sync only for the job kinds.
_SAGEMAKER_ACTIONS: Final[set[str]] = {
    "createendpoint",
    "createendpointconfig",
    "createhyperparametertuningjob",
    "createlabelingjob",
    "createmodel",
    "createprocessingjob",
    "createtrainingjob",
    "createtransformjob",
    "updateendpoint",
}

_SAGEMAKER_SYNC_JOBS: Final[dict[str, tuple[str, str, str, str]]] = {
    # action -> (name parameter, Describe operation, status field, Stop operation)
    "createtrainingjob": ("TrainingJobName", "DescribeTrainingJob", "TrainingJobStatus", "StopTrainingJob"),
    "createhyperparametertuningjob": (
        "HyperParameterTuningJobName",
        "DescribeHyperParameterTuningJob",
        "HyperParameterTuningJobStatus",
        "StopHyperParameterTuningJob",
    ),
    "createprocessingjob": (
        "ProcessingJobName",
        "DescribeProcessingJob",
        "ProcessingJobStatus",
        "StopProcessingJob",
    ),
    "createtransformjob": (
        "TransformJobName",
        "DescribeTransformJob",
        "TransformJobStatus",
        "StopTransformJob",
    ),
}

_SAGEMAKER_JOB_SUCCEEDED: Final[str] = "Completed"
# moto's callback plumbing expects a task-token endpoint whenever it waits, so the pattern is declared;
# the support check still rejects .waitForTaskToken, as AWS does for SageMaker.
_SAGEMAKER_PATTERNS: Final = cast(
    set[ResourceCondition], {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}
)
_SAGEMAKER_JOB_FAILED: Final[set[str]] = {"Failed", "Stopped"}


def _sagemaker_request_cause(error: SageMakerError, request_id: str) -> str:
    details = "; ".join(
        [
            "Service: AmazonSageMaker",
            f"Status Code: {error.status_code}",
            f"Error Code: {error.code}",
            f"Request ID: {request_id}",
            "Proxy: null",
        ]
    )
    return f"{error.message} ({details})"


class StateTaskServiceSageMaker(moto_callback.StateTaskServiceCallback):
    """`arn:aws:states:::sagemaker:<action>[.sync]` on the SageMaker emulator, modelled on moto's Batch."""

    def __init__(self) -> None:
        super().__init__(supported_integration_patterns=_SAGEMAKER_PATTERNS)

    def _get_supported_parameters(self) -> set[str] | None:
        action = self.resource.api_action.lower()
        if action not in _SAGEMAKER_ACTIONS or self.resource.condition == ResourceCondition.WaitForTaskToken:
            return None
        if self.resource.condition == ResourceCondition.Sync and action not in _SAGEMAKER_SYNC_JOBS:
            return None
        # An empty set passes moto's support check and leaves every parameter in place.
        return set()

    def _sagemaker(self, env: Environment) -> SageMakerHandler:
        integrations = integrations_of(env)
        if integrations is None:
            raise RuntimeError("the SageMaker integration runs only under stepsage's StepFunctionsService")
        return integrations.sagemaker

    def _from_error(self, env: Environment, ex: Exception) -> FailureEvent:
        if isinstance(ex, SageMakerError):
            error_name = "SageMaker.AmazonSageMakerException"
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(error_name),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=error_name,
                        cause=_sagemaker_request_cause(ex, str(uuid.uuid4())),
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> None:
        operation = _pascal_case(self.resource.api_action)
        response = self._sagemaker(env).handle(operation, normalised_parameters)
        env.stack.append(_json_safe(response or {}, _epoch_millis))

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> Callable[[], Any] | None:
        env.stack.pop()
        name_parameter = _SAGEMAKER_SYNC_JOBS[self.resource.api_action.lower()][0]
        return _SageMakerJobPoller(self, env, normalised_parameters[name_parameter])

    def _eval_sync(
        self,
        env: Environment,
        sync_resolver: Callable[[], Any] | None,
        timeout_seconds: int | None,
        callback_endpoint: Any,
        heartbeat_endpoint: Any,
    ) -> Any:
        # moto's loop sleeps a fixed 0.5 s; this one scales with time_scale, wakes on Stop, and stops the
        # job when the state ends early (timeout or StopExecution), as Step Functions does for .sync jobs.
        assert isinstance(sync_resolver, _SageMakerJobPoller)
        integrations = integrations_of(env)
        poll_seconds = integrations.scaled(SYNC_POLL_SECONDS) if integrations else SYNC_POLL_SECONDS
        while env.is_running():
            result = sync_resolver()
            if result is not None:
                return result
            env.program_state_event.wait(poll_seconds)
        sync_resolver.stop_job()
        return None


class _SageMakerJobPoller:
    """One .sync job's Describe loop body; a closure would do, but the stop path needs the job too."""

    def __init__(self, task: StateTaskServiceSageMaker, env: Environment, job_name: str) -> None:
        action = task.resource.api_action.lower()
        self._name_parameter, self._describe, self._status_field, self._stop = _SAGEMAKER_SYNC_JOBS[action]
        self._task = task
        self._env = env
        self._sagemaker = task._sagemaker(env)
        self.job_name = job_name

    def __call__(self) -> dict | None:
        response = self._sagemaker.handle(self._describe, {self._name_parameter: self.job_name})
        description: dict = _json_safe(response, _epoch_millis)
        status = description.get(self._status_field)
        if status == _SAGEMAKER_JOB_SUCCEEDED:
            return description
        if status in _SAGEMAKER_JOB_FAILED:
            # As for every .sync job, a job that ends badly fails the Task with States.TaskFailed, and the
            # cause is the job's last Describe output (FailureReason included) as JSON.
            raise FailureEventException(
                FailureEvent(
                    env=self._env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(  # type: ignore[typeddict-item]
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._task._get_sfn_resource(),
                            resourceType=self._task._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(description),
                        )
                    ),
                )
            )
        return None

    def stop_job(self) -> None:
        try:
            self._sagemaker.handle(self._stop, {self._name_parameter: self.job_name})
        except SageMakerError as error:
            # The job may have just ended on its own; there is nothing left to stop then.
            LOG.info("stopping %s after its state ended: %s", self.job_name, error)


# --- aws-sdk:sagemaker:* -----------------------------------------------------------------------------


class StateTaskServiceAwsSdkLocal(StateTaskServiceAwsSdk):
    """`arn:aws:states:::aws-sdk:<service>:<action>`: SageMaker to the emulator, the rest to the endpoint."""

    def _is_sagemaker(self) -> bool:
        return self.resource.api_name.lower() == "sagemaker"

    def _from_error(self, env: Environment, ex: Exception) -> FailureEvent:
        if isinstance(ex, SageMakerError):
            # AWS SDK integrations name errors ServiceName.ErrorName, always with the Exception suffix.
            error_name = f"SageMaker.{ex.code}"
            if not error_name.endswith("Exception"):
                error_name += "Exception"
            details = f"Service: SageMaker, Status Code: {ex.status_code}, Request ID: {uuid.uuid4()}"
            cause = f"{ex.message} ({details})"
            return self._get_task_failure_event(env=env, error=error_name, cause=cause)
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict,
        state_credentials: StateCredentials,
    ) -> None:
        integrations = integrations_of(env)
        if not self._is_sagemaker() or integrations is None:
            super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
            return
        response = integrations.sagemaker.handle(
            _pascal_case(self.resource.api_action), normalised_parameters
        )
        env.stack.append(_json_safe(response or {}, _iso_timestamp))


# --- Task factory ------------------------------------------------------------------------------------

_original_state_task_service_for = state_task_service_factory.state_task_service_for


def state_task_service_for(service_name: str) -> StateTaskService:
    if service_name == "sagemaker":
        return StateTaskServiceSageMaker()
    if service_name == "aws-sdk":
        return StateTaskServiceAwsSdkLocal()
    return _original_state_task_service_for(service_name)


# --- JSONata ------------------------------------------------------------------------------------------


def _plain_json(value: Any) -> Any:
    # jsonata-python returns its own list type and floats for whole numbers; AWS's JSON has plain ints.
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def eval_jsonata(expression: str) -> Any:
    import jsonata

    try:
        result = jsonata.Jsonata(expression).evaluate(None)
    except Exception as error:
        raise moto_jsonata.JSONataException("UNKNOWN", str(error)) from error
    return _plain_json(result)


# --- Wait and Retry on a scaled clock -------------------------------------------------------------------


def _wait_scaled(env: Environment, seconds: float) -> None:
    integrations = integrations_of(env)
    duration = integrations.scaled(seconds) if integrations else float(seconds)
    deadline = time.monotonic() + duration
    # program_state_event fires on any change of the program's state; only Stop, Fail or Timeout end the wait.
    while env.is_running():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        env.program_state_event.wait(remaining)


def _wait_function_eval_body(self: WaitFunction, env: Environment) -> None:
    _wait_scaled(env, self._get_wait_seconds(env=env))


def _retrier_eval_body(self: retrier_decl.RetrierDecl, env: Environment) -> None:
    # moto's RetrierDecl._eval_body with its time.sleep replaced by a scaled, interruptible wait.
    self.error_equals.eval(env)
    if not env.stack.pop():
        env.stack.append(RetrierOutcome.Skipped)
        return
    self.max_attempts.eval(env=env)
    if env.stack.pop() == MaxAttemptsOutcome.EXHAUSTED:
        env.stack.append(RetrierOutcome.Failed)
        return
    self.interval_seconds.eval(env=env)
    self.backoff_rate.eval(env=env)
    self.max_delay_seconds.eval(env=env)
    self.jitter_strategy.eval(env=env)
    interval_seconds: float = env.stack.pop()
    _wait_scaled(env, interval_seconds)
    env.stack.append(RetrierOutcome.Executed)


_original_timestamp_failure_event = Timestamp._create_failure_event


def _timestamp_failure_event(self: Timestamp, env: Environment, timestamp_str: str) -> FailureEvent:
    # A JSONata Timestamp that is no ISO-8601 date fails with States.QueryEvaluationError on AWS (recorded in
    # the conformance suite); moto reports States.Runtime for it, as it rightly does for TimestampPath.
    if not isinstance(self.string, StringJSONata):
        return _original_timestamp_failure_event(self, env, timestamp_str)
    error = StatesErrorNameType.StatesQueryEvaluationError.to_name()
    return FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=StatesErrorNameType.StatesQueryEvaluationError),
        event_type=HistoryEventType.ExecutionFailed,
        event_details=EventDetails(  # type: ignore[typeddict-item]
            executionFailedEventDetails=ExecutionFailedEventDetails(
                error=error,
                cause="The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format "
                f"string: {timestamp_str}",
            )
        ),
    )


def _timestamp_wait_seconds(self: Timestamp, env: Environment) -> int:
    self.string.eval(env=env)
    timestamp_str: str = env.stack.pop()
    timestamp = self._from_timestamp_string(timestamp=timestamp_str)
    if timestamp is None:
        raise FailureEventException(self._create_failure_event(env, timestamp_str))
    # The ASL's timestamps end in Z; moto subtracts the machine's local time from them, which is off by
    # the UTC offset wherever the machine's clock is not UTC.
    now = datetime.datetime.now(tz=datetime.UTC)
    return int((timestamp.replace(tzinfo=datetime.UTC) - now).total_seconds())


# --- Live progress --------------------------------------------------------------------------------------


class ObservedEventManager(EventManager):
    """moto's history recorder, also telling a listener about each event as it is added."""

    def __init__(self, execution_arn: str, listener: EventListener) -> None:
        super().__init__(cloud_watch_logging_session=None)
        self._execution_arn = execution_arn
        self._listener = listener

    def add_event(self, *args: Any, **kwargs: Any) -> int:
        event_id = super().add_event(*args, **kwargs)
        # Events are appended under the lock in id order, so the id locates it; the listener runs unlocked.
        event = self._history_event_list[event_id - 1]
        try:
            self._listener(self._execution_arn, dict(event))
        except Exception:
            LOG.exception("a Step Functions event listener failed")
        return event_id


# --- Installation and running ---------------------------------------------------------------------------

_install_lock = threading.Lock()
_installed = False


def install(integrations: Integrations | None = None) -> None:
    """Put the extensions in place (once per process); `integrations` back Map's S3 calls."""
    global _installed, _latest_integrations
    with _install_lock:
        if integrations is not None:
            _latest_integrations = integrations
        if _installed:
            return
        StateTask._eval_state_credentials = _eval_state_credentials  # type: ignore[method-assign]
        lambda_eval_utils._invoke_lambda_function = _invoke_lambda_function
        state_task_factory.state_task_service_for = state_task_service_for
        moto_jsonata._eval_jsonata = eval_jsonata
        WaitFunction._eval_body = _wait_function_eval_body  # type: ignore[method-assign]
        retrier_decl.RetrierDecl._eval_body = _retrier_eval_body  # type: ignore[method-assign]
        Timestamp._create_failure_event = _timestamp_failure_event  # type: ignore[method-assign]
        Timestamp._get_wait_seconds = _timestamp_wait_seconds  # type: ignore[method-assign]
        # Every moto module imported boto_client_for by name: each binding is replaced, not just the source.
        import sys

        for module_name, module in list(sys.modules.items()):
            if (
                module_name.startswith("moto.stepfunctions.parser")
                and getattr(module, "boto_client_for", None) is _original_boto_client_for
            ):
                module.boto_client_for = boto_client_for  # type: ignore[attr-defined]
        # moto logs every state error with its whole component tree; the execution history already holds
        # the error and cause, so the interpreter's own log would only bury stepsage's progress output.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        _installed = True


class DefinitionError(ValueError):
    """The ASL document does not parse."""


def parse_definition(definition: str) -> Program:
    try:
        program, _ = AmazonStateLanguageParser.parse(definition)
    except Exception as error:
        raise DefinitionError(str(error) or type(error).__name__) from error
    return cast(Program, program)


@dataclass(frozen=True)
class ExecutionContext:
    execution_arn: str
    execution_name: str
    execution_input: Any
    start_time: datetime.datetime
    role_arn: str
    state_machine_arn: str
    state_machine_name: str
    state_machine_type: str = StateMachineType.STANDARD


def new_environment(
    program: Program, context: ExecutionContext, integrations: Integrations, listener: EventListener | None
) -> Environment:
    env = Environment(
        aws_execution_details=LocalExecutionDetails(
            account=integrations.account_id,
            region=integrations.region,
            role_arn=context.role_arn,
            integrations=integrations,
        ),
        execution_type=StateMachineType(context.state_machine_type),
        context=ContextObjectData(  # type: ignore[typeddict-item]
            Execution=ExecutionData(
                Id=context.execution_arn,
                Input=context.execution_input,
                Name=context.execution_name,
                RoleArn=context.role_arn,
                StartTime=context.start_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ),
            StateMachine=StateMachineData(Id=context.state_machine_arn, Name=context.state_machine_name),
        ),
        event_history_context=EventHistoryContext.of_program_start(),
        cloud_watch_logging_session=None,
        activity_store={},
    )
    if listener is not None:
        env.event_manager = ObservedEventManager(context.execution_arn, listener)
    # Running from birth: moto ignores a Stop that arrives before its program loop starts.
    env.next_state_name = program.start_at.start_at_name
    return env


def run_program(program: Program, env: Environment, context: ExecutionContext) -> None:
    """Record ExecutionStarted and evaluate the program to its end, as moto's ExecutionWorker does."""
    env.event_manager.add_event(
        context=env.event_history_context,
        event_type=HistoryEventType.ExecutionStarted,
        event_details=EventDetails(  # type: ignore[typeddict-item]
            executionStartedEventDetails=ExecutionStartedEventDetails(
                input=to_json_str(context.execution_input),
                inputDetails=HistoryEventExecutionDataDetails(truncated=False),
                roleArn=context.role_arn,
            )
        ),
        update_source_event_id=False,
    )
    # Program.eval, less its `next_state_name` assignment: new_environment made the env running already,
    # and that assignment raises if a StopExecution lands in between. A stopped program's loop records
    # ExecutionAborted itself.
    timeout = program.timeout_seconds.timeout_seconds if program.timeout_seconds else None
    worker = threading.Thread(target=EvalComponent.eval, args=(program, env), daemon=True)
    worker.start()
    worker.join(timeout=timeout)
    if worker.is_alive():
        env.set_timed_out()
