"""Endpoints: real HTTP model servers behind a proxy that swaps them without dropping a request."""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.request
from typing import Any

from stepsage.local.sagemaker.context import EmulatorContext, now
from stepsage.local.sagemaker.exceptions import ModelError, RuntimeValidationError, ServiceUnavailable
from stepsage.local.sagemaker.processes import thread_environment, thread_share
from stepsage.local.sagemaker.storage import S3TransferError

MODEL_SERVER_MODULE = "stepsage.local.sagemaker.model_server"
# Serverless endpoints must answer /ping within 3 minutes; real-time invocations time out after 60 s.
STARTUP_TIMEOUT_SECONDS = 180.0
INVOCATION_TIMEOUT_SECONDS = 60.0
DRAIN_TIMEOUT_SECONDS = 60.0
LOG_LINES_KEPT = 2000


class DeploymentError(Exception):
    """A model server could not be brought up; the message becomes the endpoint's FailureReason."""


class ModelServerProcess:
    """One running model server, and how many requests are in flight to it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: collections.deque[str]) -> None:
        self.process = process
        self.port = port
        self.log = log
        self._inflight = 0
        self._idle = threading.Condition()

    def acquire(self) -> None:
        with self._idle:
            self._inflight += 1

    def release(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)


class Endpoint:
    """An endpoint's AWS-shaped state and its current model server."""

    def __init__(
        self, context: EmulatorContext, name: str, config: dict[str, Any], tags: list[dict[str, str]]
    ) -> None:
        self.context = context
        self.name = name
        self.arn = context.arn("endpoint", name)
        self.config = config
        self.status = "Creating"
        self.failure_reason: str | None = None
        self.creation_time = now()
        self.last_modified_time = self.creation_time
        self.server: ModelServerProcess | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES_KEPT)
        self.deleted = False
        self._lock = threading.Lock()
        self._deployments = itertools.count(1)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "EndpointName": self.name,
                "EndpointArn": self.arn,
                "EndpointConfigName": self.config["EndpointConfigName"],
                "EndpointStatus": self.status,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
            }
            if self.failure_reason:
                out["FailureReason"] = self.failure_reason
            if self.server is not None:
                out["ProductionVariants"] = [_variant_summary(v) for v in self.config["ProductionVariants"]]
            return out

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "EndpointName": self.name,
                "EndpointArn": self.arn,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "EndpointStatus": self.status,
            }

    def set_status(self, status: str, reason: str | None = None) -> None:
        with self._lock:
            self.status = status
            self.failure_reason = reason
            self.last_modified_time = now()
        self.context.emit("EndpointStatus", endpoint=self.name, status=status, failure_reason=reason)

    # ---- deployment -----------------------------------------------------------------------------

    def deploy(self, config: dict[str, Any], model: dict[str, Any], *, updating: bool) -> None:
        """Bring up `model` for `config`, then switch traffic to it; runs on its own thread."""
        try:
            server = self._start_server(model)
        except DeploymentError as e:
            if updating:
                # A failed update leaves the old deployment serving, as SageMaker rolls back.
                self.set_status("InService", f"Update failed: {e}")
            else:
                self.set_status("Failed", str(e))
            return
        old: ModelServerProcess | None
        with self._lock:
            if self.deleted:
                old, self.server = server, None
            else:
                old, self.server = self.server, server
                self.config = config
        if old is not None:
            self._retire(old)
        if not self.deleted:
            self.set_status("InService")

    def _start_server(self, model: dict[str, Any]) -> ModelServerProcess:
        container = model.get("PrimaryContainer") or model["Containers"][0]
        deployment = self.context.work_dir / "endpoints" / self.name / f"deployment-{next(self._deployments)}"
        if deployment.exists():
            shutil.rmtree(deployment)
        model_dir = deployment / "model"
        model_dir.mkdir(parents=True)
        try:
            archive = deployment / "model.tar.gz"
            self.context.storage.download_file(container["ModelDataUrl"], archive)
            with tarfile.open(archive) as tar:
                tar.extractall(model_dir, filter="data")
        except (S3TransferError, tarfile.TarError, OSError, KeyError) as e:
            raise DeploymentError(f"Failed to extract model data archive: {e}") from e
        threads = thread_share(self.context.cores, 2)
        env = dict(os.environ)
        env.update(thread_environment(threads))
        env.update(container.get("Environment") or {})
        env["PYTHONUNBUFFERED"] = "1"
        command = [
            self.context.python,
            "-m",
            MODEL_SERVER_MODULE,
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--threads",
            str(threads),
        ]
        process = self.context.processes.spawn(command, cwd=deployment, env=env)
        try:
            port = self._await_ready(process)
        except DeploymentError:
            self.context.processes.terminate(process, 2)
            raise
        return ModelServerProcess(process, port, self.log)

    def _await_ready(self, process: subprocess.Popen[bytes]) -> int:
        """Read the server's `{"port", "pid"}` line, then wait for /ping to answer 200."""
        announced: dict[str, Any] = {}
        got_line = threading.Event()

        def pump() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                self.log.append(line)
                if not got_line.is_set():
                    try:
                        document = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(document, dict) and "port" in document:
                        announced.update(document)
                        got_line.set()

        threading.Thread(target=pump, name=f"endpoint-log-{self.name}", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not got_line.wait(0.1):
            if process.poll() is not None:
                time.sleep(0.2)  # let the pump catch the last lines
                tail = " | ".join(list(self.log)[-5:])
                raise DeploymentError(
                    f"The model server exited during startup ({process.returncode}): {tail}"[:1024]
                )
            if time.monotonic() > deadline:
                raise DeploymentError("The model server did not start within the time limit")
        port = int(announced["port"])
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeploymentError(f"The model server exited during startup ({process.returncode})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
                    if response.status == 200:
                        return port
            except OSError:
                pass
            time.sleep(0.2)
        raise DeploymentError("The primary container did not pass the ping health check")

    def _retire(self, server: ModelServerProcess) -> None:
        """Wait for the requests already sent to the old server, then stop it."""
        server.wait_idle(DRAIN_TIMEOUT_SECONDS)
        self.context.processes.terminate(server.process, 30)

    def shutdown(self) -> None:
        with self._lock:
            self.deleted = True
            server, self.server = self.server, None
        if server is not None:
            self._retire(server)

    # ---- traffic --------------------------------------------------------------------------------

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]:
        with self._lock:
            server = self.server
            if server is None or self.status not in ("InService", "Updating"):
                raise RuntimeValidationError(
                    f"Endpoint {self.name} is not in service (status {self.status})."
                )
            # Counted under the lock, so a swap that follows cannot retire this server mid-request.
            server.acquire()
        try:
            return self._forward(server, body, content_type, accept)
        finally:
            server.release()

    def _forward(
        self, server: ModelServerProcess, body: bytes, content_type: str, accept: str
    ) -> tuple[int, bytes, str]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=INVOCATION_TIMEOUT_SECONDS)
        try:
            connection.request(
                "POST", "/invocations", body=body, headers={"Content-Type": content_type, "Accept": accept}
            )
            response = connection.getresponse()
            payload = response.read()
            status = response.status
            response_type = response.getheader("Content-Type") or "application/octet-stream"
        except (OSError, http.client.HTTPException) as e:
            raise ServiceUnavailable(f"The model server for endpoint {self.name} did not answer: {e}") from e
        finally:
            connection.close()
        if status >= 400:
            raise self._model_error(status, payload)
        return status, payload, response_type

    def _model_error(self, status: int, payload: bytes) -> ModelError:
        original = payload.decode("utf-8", errors="replace")
        side = "client" if status < 500 else "server"
        region, account = self.context.region, self.context.account_id
        log_group = f"/aws/sagemaker/Endpoints/{self.name}"
        message = (
            f'Received {side} error ({status}) from primary with message "{original}". See '
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group="
            f"{log_group} in account {account} for more information."
        )
        log_stream = f"arn:aws:logs:{region}:{account}:log-group:{log_group}"
        return ModelError(message, status, original, log_stream)


def _variant_summary(variant: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "VariantName": variant["VariantName"],
        "CurrentWeight": float(variant.get("InitialVariantWeight", 1.0)),
        "DesiredWeight": float(variant.get("InitialVariantWeight", 1.0)),
    }
    if "ServerlessConfig" in variant:
        summary["CurrentServerlessConfig"] = variant["ServerlessConfig"]
        summary["DesiredServerlessConfig"] = variant["ServerlessConfig"]
    else:
        summary["CurrentInstanceCount"] = variant.get("InitialInstanceCount", 1)
        summary["DesiredInstanceCount"] = variant.get("InitialInstanceCount", 1)
    return summary
