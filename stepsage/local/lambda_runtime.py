"""Local Lambda: each function built from its own requirements and run in warm, isolated worker processes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stepsage.local import children
from stepsage.local.errors import LambdaFunctionError
from stepsage.local.template import LocalFunction, LocalLayer, LocalStack

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
# What the Lambda Python runtime itself ships beside the stdlib: boto3 and its dependencies.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")
LOCAL_PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
MAX_WORKERS_PER_FUNCTION = 4


class BuildError(RuntimeError):
    """A function or layer could not be built for the local runtime."""


def _tree_digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256(LOCAL_PYTHON_VERSION.encode())
    for root in paths:
        if not root.exists():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class LambdaBuilder:
    """Runs each resource's SAM build for the local interpreter, caching results by content."""

    def __init__(self, stack: LocalStack, build_root: Path, extra_inputs: Iterable[Path] = ()) -> None:
        self.stack = stack
        self.build_root = build_root
        # Makefile builds may copy from outside their CodeUri (the SageMaker code layer does).
        self.extra_inputs = list(extra_inputs)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def _lock_for(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def _build(self, logical_id: str, source: Path, build_method: str | None) -> Path:
        key = _tree_digest([source, *self.extra_inputs])
        target = self.build_root / logical_id / key
        if (target / ".complete").exists():
            return target
        staging = target.with_name(key + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if build_method == "makefile":
            command = [
                "make",
                "-C",
                str(source),
                f"build-{logical_id}",
                f"ARTIFACTS_DIR={staging}",
                f"PYTHON_VERSION={LOCAL_PYTHON_VERSION}",
            ]
        else:
            # SAM's default Python build: the code, plus its requirements installed beside it.
            shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            command = ["true"]
            if (source / "requirements.txt").exists():
                command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(staging)]
                command += ["-r", str(source / "requirements.txt")]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(
                f"building {logical_id} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (target / ".complete").write_text("ok")
        return target

    def function(self, function: LocalFunction) -> Path:
        with self._lock_for(function.logical_id):
            return self._build(function.logical_id, function.code_uri, function.build_method)

    def layer(self, layer: LocalLayer) -> Path:
        with self._lock_for(layer.logical_id):
            return self._build(layer.logical_id, layer.content_uri, layer.build_method)

    def runtime_dir(self) -> Path:
        """Links to the venv's boto3 and friends, standing in for what the Lambda runtime preinstalls."""
        target = self.build_root / "_runtime"
        with self._lock_for("_runtime"):
            return self._link_runtime(target)

    def _link_runtime(self, target: Path) -> Path:
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            import boto3

            site = Path(boto3.__file__).resolve().parents[1]
            for name in RUNTIME_PACKAGES:
                link = target / name
                if not link.exists() and (site / name).exists():
                    link.symlink_to(site / name)
            (target / ".complete").write_text("ok")
        return target

    def opt_dir(self, function: LocalFunction) -> Path:
        """The function's /opt: its layers merged in order, later layers winning, as Lambda extracts them."""
        with self._lock_for("_opt/" + function.logical_id):
            return self._merge_layers(function)

    def _merge_layers(self, function: LocalFunction) -> Path:
        layer_dirs = [self.layer(self.stack.layers[layer_id]) for layer_id in function.layers]
        key = hashlib.sha256("|".join(str(d) for d in layer_dirs).encode()).hexdigest()[:16]
        target = self.build_root / "_opt" / function.logical_id / key
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for layer_dir in layer_dirs:
                shutil.copytree(
                    layer_dir, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete")
                )
            (target / ".complete").write_text("ok")
        return target


class _Worker:
    """One warm 'container': a long-lived isolated interpreter with the function's handler imported."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        request_read, self._request_write = os.pipe()
        self._response_read, response_write = os.pipe()
        env = dict(env, _STEPSAGE_REQUEST_FD=str(request_read), _STEPSAGE_RESPONSE_FD=str(response_write))
        self.log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the worker
        self.process = children.spawn(
            command,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(request_read, response_write),
        )
        os.close(request_read)
        os.close(response_write)
        self._requests = os.fdopen(self._request_write, "w", encoding="utf-8")
        self._responses = os.fdopen(self._response_read, "r", encoding="utf-8")
        self._ready: dict[str, Any] | None = None

    def _read_line(self, timeout: float) -> dict[str, Any] | None:
        """The worker's next message; None on timeout; {"dead": True} when the worker closed its pipe."""
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._responses.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive() or not result:
            return None
        if not result[0]:
            return {"dead": True}
        return json.loads(result[0])

    def invoke(self, event: Any, timeout_s: float) -> dict[str, Any]:
        if self._ready is None:
            # Lambda gives init its own 10 s, on top of the invocation's timeout.
            self._ready = self._read_line(timeout_s + 10) or {"ready": False, "dead": True}
            if self._ready.get("dead"):
                self.stop()
                return {"error": self._death("Runtime.ExitError", "exited during init")}
        deadline = time.time() + timeout_s
        self._requests.write(
            json.dumps({"event": event, "request_id": str(uuid.uuid4()), "deadline": deadline})
        )
        self._requests.write("\n")
        self._requests.flush()
        reply = self._read_line(max(0.0, deadline - time.time()) + 0.5)
        if reply is not None and not reply.get("dead"):
            return reply
        if reply is None:
            self.stop()
            return {
                "error": {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {timeout_s:.2f} seconds",
                }
            }
        return {"error": self._death("Runtime.ExitError", "exited")}

    def _death(self, error_type: str, what: str) -> dict[str, Any]:
        code = self.process.wait(timeout=10)
        return {"errorType": error_type, "errorMessage": f"RequestId: worker {what} with status {code}"}

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        for stream in (self._requests, self._responses, self.log):
            try:
                stream.close()
            except OSError:
                pass


class LambdaRuntime:
    """Invokes the template's functions: a warm worker pool per function, Lambda-shaped errors."""

    def __init__(
        self,
        stack: LocalStack,
        builder: LambdaBuilder,
        *,
        base_env: dict[str, str],
        log_dir: Path,
        on_log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.stack = stack
        self.builder = builder
        self.base_env = base_env
        self.log_dir = log_dir
        self.on_log = on_log
        self._idle: dict[str, list[_Worker]] = {}
        self._count: dict[str, int] = {}
        self._all: list[_Worker] = []
        self._lock = threading.Condition()
        self._closed = False

    def prepare(self, function: LocalFunction) -> tuple[list[str], dict[str, str]]:
        task_root = self.builder.function(function)
        opt = self.builder.opt_dir(function)
        sys_path = [str(task_root), str(opt / "python"), str(self.builder.runtime_dir())]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")}
        env.update(self.base_env)
        for key, value in function.environment.items():
            # Layers live under /opt on Lambda; locally /opt is this function's merged layer folder.
            env[key] = (
                str(opt) + value[len("/opt") :] if value == "/opt" or value.startswith("/opt/") else value
            )
        env.update(
            {
                "_HANDLER": function.handler,
                "_STEPSAGE_SYS_PATH": json.dumps(sys_path),
                "_STEPSAGE_FUNCTION_ARN": function.arn,
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
                "AWS_EXECUTION_ENV": "AWS_Lambda_" + function.runtime,
                "LAMBDA_TASK_ROOT": str(task_root),
                "LAMBDA_RUNTIME_DIR": str(self.builder.runtime_dir()),
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        command = [sys.executable, "-I", "-S", str(BOOTSTRAP)]
        return command, env

    def _checkout(self, function: LocalFunction) -> _Worker:
        with self._lock:
            while True:
                if self._closed:
                    raise LambdaFunctionError("ServiceException", "the local cloud is shutting down")
                idle = self._idle.setdefault(function.logical_id, [])
                while idle:
                    worker = idle.pop()
                    if worker.alive:
                        return worker
                    self._count[function.logical_id] -= 1
                if self._count.get(function.logical_id, 0) < MAX_WORKERS_PER_FUNCTION:
                    self._count[function.logical_id] = self._count.get(function.logical_id, 0) + 1
                    break
                self._lock.wait(1.0)
        try:
            command, env = self.prepare(function)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            worker = _Worker(command, env, self.log_dir / f"{function.logical_id}.log")
        except Exception:
            with self._lock:
                self._count[function.logical_id] -= 1
            raise
        with self._lock:
            self._all.append(worker)
        return worker

    def _checkin(self, function: LocalFunction, worker: _Worker) -> None:
        with self._lock:
            if worker.alive and not self._closed:
                self._idle[function.logical_id].append(worker)
            else:
                self._count[function.logical_id] -= 1
                worker.stop()
            self._lock.notify_all()

    def invoke(self, function_ref: str, event: Any) -> Any:
        """Run the function on `event`; raise LambdaFunctionError as Lambda reports a function error."""
        function = self.stack.function_by_arn(function_ref)
        worker = self._checkout(function)
        try:
            reply = worker.invoke(event, float(function.timeout))
        finally:
            self._checkin(function, worker)
        if "error" in reply:
            error = reply["error"]
            raise LambdaFunctionError(
                error.get("errorType", "Unhandled"), error.get("errorMessage", ""), error.get("stackTrace")
            )
        return reply["result"]

    def invoke_async(self, function_ref: str, event: Any, retries: int = 2) -> threading.Thread:
        """An asynchronous invocation (as EventBridge makes): retried twice on error, as Lambda does."""

        def run() -> None:
            for attempt in range(retries + 1):
                try:
                    self.invoke(function_ref, event)
                    return
                except LambdaFunctionError as error:
                    if self.on_log:
                        self.on_log(function_ref, f"async attempt {attempt + 1} failed: {error}")
                    if self._closed:
                        return
                    time.sleep(min(60.0, 1.0 * (attempt + 1)))

        thread = threading.Thread(target=run, daemon=True, name=f"async-{function_ref}")
        thread.start()
        return thread

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._lock.notify_all()
        for worker in workers:
            worker.stop()
