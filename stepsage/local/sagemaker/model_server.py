"""The local endpoint container: an HTTP model server (GET /ping, POST /invocations) over inference.py."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from stepsage.local.http_framing import LISTEN_BACKLOG, FramingError, StrictRequestHandler

logger = logging.getLogger("stepsage.model_server")

THREADS_ENV = "STEPSAGE_TORCH_THREADS"
# Real-time endpoints accept 6 MB (serverless 4 MB); refuse larger bodies before reading them.
DEFAULT_MAX_REQUEST_BYTES = 6 * 1024 * 1024
# Seconds a request body may take to arrive; a client that announces more than it sends gets a 408.
DEFAULT_READ_TIMEOUT = 30.0
HANDLER_NAMES = ("model_fn", "input_fn", "predict_fn", "output_fn")


class ModelLoadError(RuntimeError):
    """code/inference.py is missing, lacks a handler, or its model_fn failed."""


def load_inference_module(model_dir: Path) -> ModuleType:
    """Import `model_dir/code/inference.py` the way the SageMaker toolkit does: code/ goes first on sys.path,
    so the files copied beside it (presets.py, architectures.py) import by their plain names."""
    code_dir = model_dir / "code"
    if not (code_dir / "inference.py").is_file():
        raise ModelLoadError(f"{code_dir / 'inference.py'} does not exist")
    sys.path.insert(0, str(code_dir))
    try:
        module = importlib.import_module("inference")
    except Exception as e:
        raise ModelLoadError(f"importing {code_dir / 'inference.py'} failed: {e}") from e
    missing = [name for name in HANDLER_NAMES if not callable(getattr(module, name, None))]
    if missing:
        raise ModelLoadError(f"{code_dir / 'inference.py'} does not define {', '.join(missing)}")
    return module


class ModelHost:
    """The loaded handlers and model; `ready` flips once model_fn returns."""

    def __init__(self, model_dir: Path, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.model_dir = model_dir
        self.max_request_bytes = max_request_bytes
        self.module: ModuleType | None = None
        self.model: Any = None
        self.ready = threading.Event()
        self.load_error: BaseException | None = None

    def load(self) -> None:
        try:
            module = load_inference_module(self.model_dir)
            self.model = module.model_fn(str(self.model_dir))
            self.module = module
            self.ready.set()
        except ModelLoadError as e:
            self.load_error = e
            raise
        except Exception as e:
            self.load_error = e
            raise ModelLoadError(f"model_fn failed: {e}") from e

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        module = self.module
        if module is None:
            raise ModelLoadError("the model is not loaded")
        data = module.input_fn(body, content_type)
        prediction = module.predict_fn(data, self.model)
        result = module.output_fn(prediction, accept)
        response_type = "application/json"
        if isinstance(result, tuple):  # the toolkit also lets output_fn return (body, content_type)
            result, response_type = result
        return (result.encode("utf-8") if isinstance(result, str) else bytes(result)), response_type


def client_error_status(error: BaseException) -> int | None:
    """The 4xx a typed inference error carries (`status_code`, as the SageMaker toolkit's errors do)."""
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) and 400 <= status < 500 else None


class InvocationHandler(StrictRequestHandler):
    # HTTP/1.1 keep-alive, as SageMaker's front end uses; malformed framing gets its 4xx (http_framing).
    server_version = "stepsage-model-server"
    # A backstop for clients that vanish mid-request; idle keep-alive connections are closed on shutdown.
    timeout = 120
    body_timeout = DEFAULT_READ_TIMEOUT
    host: ModelHost  # set on the subclass that make_server builds
    server: ModelServer

    def handle_one_request(self) -> None:
        if not self.server.connection_idle(self.connection):
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.server.connection_busy(self.connection)
        if self.server.stopping.is_set():
            self.close_connection = True
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _send_json(self, status: int, document: dict[str, Any], close: bool = False) -> None:
        self._send(status, json.dumps(document).encode("utf-8"), "application/json", close)

    def _send(self, status: int, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close or self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
            self._linger = close  # an unread body must not reset the connection before the answer is read
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/ping":
            self._send_json(HTTPStatus.NOT_FOUND, {"message": f"no route GET {self.path}"})
        elif self.host.ready.is_set():
            self._send_json(HTTPStatus.OK, {"status": "Healthy"})
        else:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "Loading"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/invocations":
            self._send_json(HTTPStatus.NOT_FOUND, {"message": f"no route POST {self.path}"}, close=True)
            return
        if not self.has_body_framing():
            # Without a length or chunks the body cannot be framed, so the connection must end.
            message = "a Content-Length header (or Transfer-Encoding: chunked) is required"
            self.send_error(HTTPStatus.LENGTH_REQUIRED, message)
            return
        try:
            body = self.read_body(self.host.max_request_bytes)
        except FramingError as e:
            self.send_framing_error(e)
            return
        length = len(body)
        if not self.host.ready.is_set():
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"message": "the model is still loading"})
            return
        started = time.perf_counter()
        try:
            payload, response_type = self.host.invoke(
                body, self.headers.get("Content-Type"), self.headers.get("Accept")
            )
        except Exception as e:
            status = client_error_status(e)
            if status is not None:
                self._send_json(status, {"message": str(getattr(e, "message", e))})
            else:
                logger.error("invocation failed:\n%s", traceback.format_exc())
                self._send_json(
                    HTTPStatus.INTERNAL_SERVER_ERROR, {"message": f"model error: {type(e).__name__}: {e}"}
                )
            return
        logger.info("invocation %d bytes in %.1f ms", length, (time.perf_counter() - started) * 1000)
        self._send(HTTPStatus.OK, payload, response_type)


class ModelServer(ThreadingHTTPServer):
    # Join request threads on close, so a shutdown (or an endpoint swap) never cuts an answer short.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()

    def connection_idle(self, connection: socket.socket) -> bool:
        """Mark a keep-alive connection as waiting for its next request; False once the server stops."""
        with self._lock:
            if self.stopping.is_set():
                return False
            self._idle.add(connection)
            return True

    def connection_busy(self, connection: socket.socket) -> None:
        with self._lock:
            self._idle.discard(connection)

    def drain(self) -> None:
        """Stop accepting, let requests in flight finish, and hang up on idle keep-alive connections
        (their threads would otherwise block the close until the client hangs up)."""
        with self._lock:
            self.stopping.set()
            idle, self._idle = self._idle, set()
        for connection in idle:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)
        self.shutdown()

    def shutdown_request(self, request: Any) -> None:
        self.connection_busy(request)
        super().shutdown_request(request)


def make_server(
    host: ModelHost, address: str, port: int, read_timeout: float = DEFAULT_READ_TIMEOUT
) -> ModelServer:
    handler = type(
        "BoundInvocationHandler", (InvocationHandler,), {"host": host, "body_timeout": read_timeout}
    )
    return ModelServer((address, port), handler)


def apply_thread_budget(threads: int | None) -> None:
    """Serving shares the machine's cores with training and Lambdas; torch and OpenMP read these."""
    if threads:
        os.environ[THREADS_ENV] = str(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MKL_NUM_THREADS"] = str(threads)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True, type=Path, help="an unpacked model.tar.gz")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=None, help=f"torch threads (default: ${THREADS_ENV})")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument(
        "--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT, help="seconds a request body may take"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    apply_thread_budget(args.threads)
    host = ModelHost(args.model_dir.resolve(), args.max_request_bytes)
    server = make_server(host, args.host, args.port, args.read_timeout)
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs on this (the main) thread: call it from another.
        if not stopping.is_set():
            stopping.set()
            logger.info("signal %d: draining and stopping", signum)
            threading.Thread(target=server.drain, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def load_then_announce() -> None:
        try:
            host.load()
        except ModelLoadError as e:
            logger.error("%s", e)
            stop(signal.SIGTERM, None)
            return
        port = server.server_address[1]
        print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)

    # /ping answers 503 while the model loads, as a SageMaker container does during boot.
    threading.Thread(target=load_then_announce, name="model-loader", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 1 if host.load_error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
