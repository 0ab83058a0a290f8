"""Assembles the local cloud from template.yaml: moto, Step Functions, SageMaker, Lambdas, events, URL."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from stepsage.local.children import kill_children
from stepsage.local.events import EventDispatcher, install_moto_s3_hook
from stepsage.local.function_url import FunctionUrlServer
from stepsage.local.gateway import Gateway, GatewayServer, moto_wsgi_app
from stepsage.local.lambda_runtime import LambdaBuilder, LambdaRuntime
from stepsage.local.template import ACCOUNT_ID, REGION, LocalStack, resolve_stack

LOG = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 4566
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def samconfig_overrides(root: Path, environment: str = "local") -> dict[str, str]:
    """The `parameter_overrides` of samconfig.toml's `[<environment>.deploy.parameters]`, as a dict."""
    path = root / "samconfig.toml"
    if not path.exists():
        return {}
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    raw = config.get(environment, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    items = raw.split() if isinstance(raw, str) else list(raw)
    overrides = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"samconfig.toml [{environment}]: {item!r} is not Name=Value")
        overrides[name] = value.strip('"')
    return overrides


@dataclass
class CloudSettings:
    root: Path = REPO_ROOT
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    function_url_port: int = 0
    stack_name: str = "stepsage-local"
    work_dir: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    time_scale: float = 1.0
    cores: int = os.cpu_count() or 2

    @property
    def state_dir(self) -> Path:
        """Jobs, endpoints and logs of this cloud (STEPSAGE_LOCAL_STATE moves it, e.g. for tests)."""
        configured = self.work_dir or os.environ.get("STEPSAGE_LOCAL_STATE")
        return Path(configured) if configured else self.root / ".local-cloud"

    @property
    def build_dir(self) -> Path:
        """Lambda builds, cached by content and shared by every local cloud of this checkout."""
        return self.root / ".local-cloud" / "build"


class LocalCloud:
    """The whole local cloud in one process; `start()` serves it, `stop()` leaves no process behind."""

    def __init__(self, settings: CloudSettings | None = None) -> None:
        self.settings = settings or CloudSettings()
        # The local profile in samconfig.toml first, then what the caller asked for.
        parameters = {**samconfig_overrides(self.settings.root), **self.settings.parameters}
        self.stack: LocalStack = resolve_stack(
            self.settings.root / "template.yaml", self.settings.stack_name, parameters
        )
        self.builder = LambdaBuilder(
            self.stack,
            self.settings.build_dir,
            # What the makefile builds read besides their own folder: the shared recipe, the contracts
            # package every unit carries, and the code layer's sources.
            extra_inputs=[
                self.settings.root / "make",
                self.settings.root / "contracts",
                self.settings.root / "training_code",
                self.settings.root / "inference_code",
            ],
        )
        self._services: dict[str, Any] = {}
        self._runtime_proxy = _LateRuntime()
        self.gateway = GatewayServer(
            Gateway(moto_wsgi_app(), self._services, runtime=self._runtime_proxy),
            host=self.settings.host,
            port=self.settings.port,
        )
        self.url = self.gateway.url
        self.lambdas: LambdaRuntime | None = None
        self.sagemaker: Any = None
        self.stepfunctions: Any = None
        self.dispatcher: EventDispatcher | None = None
        self.function_urls: dict[str, FunctionUrlServer] = {}
        self._unhook: Callable[[], None] | None = None
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._started = False
        self._lock = threading.Lock()

    # --- life cycle --------------------------------------------------------------------------------

    def build(self, progress: Callable[[str], None] | None = None) -> None:
        """Build every function and layer for the local interpreter (cached by content)."""
        functions = list(self.stack.functions.values())
        with ThreadPoolExecutor(max_workers=4) as pool:
            for function, _ in zip(functions, pool.map(self._build_one, functions), strict=True):
                if progress:
                    progress(f"built {function.logical_id}")

    def _build_one(self, function: Any) -> None:
        self.builder.function(function)
        self.builder.opt_dir(function)

    def start(self) -> LocalCloud:
        from stepsage.local.sagemaker.backend import SageMakerBackend
        from stepsage.local.stepfunctions.service import StepFunctionsService

        with self._lock:
            if self._started:
                return self
            self._started = True
        state = self.settings.state_dir
        self.gateway.start()
        base_env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **FAKE_CREDENTIALS,
            # No X-Ray daemon locally: Powertools' Tracer stays off (a documented local deviation).
            "POWERTOOLS_TRACE_DISABLED": "true",
            "OMP_NUM_THREADS": "1",
        }
        self.lambdas = LambdaRuntime(
            self.stack, self.builder, base_env=base_env, log_dir=state / "logs" / "lambda"
        )
        self.sagemaker = SageMakerBackend(
            s3_endpoint_url=self.url,
            work_dir=state / "sagemaker",
            region=REGION,
            account_id=ACCOUNT_ID,
            cores=self.settings.cores,
        )
        self.stepfunctions = StepFunctionsService(
            self.lambdas.invoke,
            self.sagemaker,
            aws_endpoint_url=self.url,
            region=REGION,
            account_id=ACCOUNT_ID,
            time_scale=self.settings.time_scale,
        )
        self._services.update({"SageMaker": self.sagemaker, "AWSStepFunctions": self.stepfunctions})
        self._runtime_proxy.target = self.sagemaker
        self.stepfunctions.on_event(lambda arn, event: self._emit("states", {"execution_arn": arn, **event}))
        if hasattr(self.sagemaker, "add_listener"):
            self.sagemaker.add_listener(self._sagemaker_event)
        self._create_resources()
        lambdas = self.lambdas

        def deliver(target: str, event: dict[str, Any]) -> None:
            lambdas.invoke_async(target, event)

        self.dispatcher = EventDispatcher(self.stack.rules, deliver)
        self._unhook = install_moto_s3_hook(self.dispatcher.put)
        for function in self.stack.functions.values():
            if function.function_url_auth:
                server = FunctionUrlServer(
                    functools.partial(lambdas.invoke, function.logical_id),
                    host=self.settings.host,
                    port=self.settings.function_url_port,
                ).start()
                self.function_urls[function.logical_id] = server
        return self

    def stop(self, deadline_s: float = 30.0) -> None:
        """Stop in order: executions, jobs and endpoints, Lambdas, servers. Never hangs past `deadline_s`:
        what is still running then is killed, so Ctrl-C always leaves no process behind."""
        if self._unhook:
            self._unhook()
            self._unhook = None
        steps: list[tuple[str, Callable[[], None]]] = [
            (name, part.shutdown)
            for name, part in (
                ("Step Functions", self.stepfunctions),
                ("SageMaker", self.sagemaker),
                ("Lambda", self.lambdas),
            )
            if part is not None
        ]
        steps += [(f"Function URL {lid}", server.stop) for lid, server in self.function_urls.items()]
        if self.dispatcher:
            steps.append(("events", self.dispatcher.close))
        steps.append(("gateway", self.gateway.stop))
        current = {"step": ""}

        def run_steps() -> None:
            for name, step in steps:
                current["step"] = name
                started = time.monotonic()
                step()
                if time.monotonic() - started > 5:
                    LOG.warning("stopping %s took %.1f s", name, time.monotonic() - started)

        stopper = threading.Thread(target=run_steps, name="cloud-stop", daemon=True)
        stopper.start()
        stopper.join(deadline_s)
        if stopper.is_alive():
            LOG.warning(
                "stopping %s took over %.0f s: killing every child process", current["step"], deadline_s
            )
            kill_children()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- resources -----------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        factory: Any = boto3.client
        return factory(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def _create_resources(self) -> None:
        s3 = self.client("s3")
        for logical_id, bucket in self.stack.buckets.items():
            try:
                s3.create_bucket(Bucket=bucket)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            if self.stack.bucket_eventbridge.get(logical_id):
                s3.put_bucket_notification_configuration(
                    Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
                )
        sns = self.client("sns")
        for topic_arn in self.stack.topics.values():
            sns.create_topic(Name=topic_arn.rsplit(":", 1)[1])
        for machine in self.stack.state_machines.values():
            existing = {
                m["stateMachineArn"]
                for m in self.stepfunctions.handle("ListStateMachines", {})["stateMachines"]
            }
            if machine.arn not in existing:
                self.stepfunctions.handle(
                    "CreateStateMachine",
                    {"name": machine.name, "definition": machine.definition, "roleArn": machine.role_arn},
                )

    # --- what a user needs to know -------------------------------------------------------------------

    @property
    def data_bucket(self) -> str:
        for logical_id, bucket in self.stack.buckets.items():
            if self.stack.bucket_eventbridge.get(logical_id):
                return bucket
        raise LookupError("the template has no bucket with EventBridge notifications")

    @property
    def artifacts_bucket(self) -> str:
        others = [b for lid, b in self.stack.buckets.items() if not self.stack.bucket_eventbridge.get(lid)]
        return others[0]

    @property
    def state_machine_arn(self) -> str:
        return next(iter(self.stack.state_machines.values())).arn

    @property
    def function_url(self) -> str | None:
        server = next(iter(self.function_urls.values()), None)
        return server.url if server else None

    def info(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.url,
            "data_bucket": self.data_bucket,
            "artifacts_bucket": self.artifacts_bucket,
            "state_machine_arn": self.state_machine_arn,
            "function_url": self.function_url,
            "region": REGION,
            # Endpoint names are per stack (stepsage_lambda.naming.endpoint_name(stack_name, dataset)).
            "stack_name": self.settings.stack_name,
        }

    # --- progress ------------------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """`listener(source, event)` for Step Functions history events and SageMaker progress events."""
        self._listeners.append(listener)

    def _sagemaker_event(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and isinstance(args[0], dict):
            event = dict(args[0])
        else:
            event = dict(kwargs)
            if args:
                event["event"] = args[0]
        self._emit("sagemaker", event)

    def _emit(self, source: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(source, event)
            except Exception:  # a broken progress display must never break the pipeline
                pass


class _LateRuntime:
    """Lets the gateway exist before the SageMaker backend (which needs the gateway's URL for S3)."""

    target: Any = None

    def invoke_endpoint(self, endpoint_name: str, body: bytes, content_type: str, accept: str) -> Any:
        return self.target.invoke_endpoint(endpoint_name, body, content_type, accept)
