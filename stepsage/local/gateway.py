"""The local cloud's one endpoint: SageMaker and Step Functions to our services, everything else to moto."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wsgi import get_input_stream

from stepsage.local.errors import ServiceError

_INVOCATIONS = re.compile(r"^/endpoints/([^/]+)/invocations$")
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


# The most a JSON call or an InvokeEndpoint body may carry (SageMaker Runtime takes at most 25 MB).
MAX_BODY_BYTES = 32 * 1024 * 1024
# Seconds the gateway waits for a request's next bytes before it gives up on the client.
CLIENT_TIMEOUT = 60


class BadBody(Exception):
    """A request body that is malformed, too large or never arrives; `status` is its 4xx."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JsonService(Protocol):
    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


class Runtime(Protocol):
    def invoke_endpoint(
        self, endpoint_name: str, body: bytes, content_type: str, accept: str
    ) -> tuple[int, bytes, str]: ...


def _aws_json_default(value: Any) -> Any:
    # The AWS JSON protocols carry timestamps as epoch seconds.
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes | bytearray):
        import base64

        return base64.b64encode(value).decode()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def signing_service(environ: dict[str, Any]) -> str | None:
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


class Gateway:
    """A WSGI app: routes AWS JSON-protocol targets and SageMaker Runtime, hands the rest to moto."""

    def __init__(
        self,
        moto_app: Callable[..., Iterable[bytes]],
        services: dict[str, JsonService],
        runtime: Runtime | None = None,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:
        # services: X-Amz-Target prefix ("SageMaker", "AWSStepFunctions") -> service
        self.moto_app = moto_app
        self.services = services
        self.runtime = runtime
        self.on_request = on_request

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        prefix, _, operation = target.partition(".")
        if prefix in self.services and operation:
            return self._json_call(self.services[prefix], operation, environ, start_response)
        match = _INVOCATIONS.match(environ.get("PATH_INFO", ""))
        is_post = environ.get("REQUEST_METHOD") == "POST"
        if match and self.runtime is not None and is_post and signing_service(environ) in (None, "sagemaker"):
            return self._invoke_endpoint(match.group(1), environ, start_response)
        return self.moto_app(environ, start_response)

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes:
        """The request body, by Content-Length or chunked, bounded; raises BadBody with its 4xx."""
        raw = (environ.get("CONTENT_LENGTH") or "").strip()
        chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise BadBody(400, f"Content-Length {raw[:40]!r} is not a byte count")
        length = int(raw) if raw and not chunked else None
        if length is not None and length > MAX_BODY_BYTES:
            raise BadBody(413, f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        if length is None and not chunked:
            return b""
        try:
            data = get_input_stream(environ, max_content_length=MAX_BODY_BYTES).read()
        except RequestEntityTooLarge as e:
            raise BadBody(413, f"the body exceeds the limit of {MAX_BODY_BYTES} bytes") from e
        except ClientDisconnected as e:
            raise BadBody(400, "the body ended before its Content-Length") from e
        except TimeoutError as e:
            raise BadBody(408, "the body did not arrive in time") from e
        return data

    @staticmethod
    def _json_params(raw: bytes) -> dict[str, Any]:
        try:
            params = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError) as e:  # JSON, UTF-8, 5,000-digit numbers, deep nesting
            raise BadBody(400, f"the body is not a JSON request: {str(e)[:200]}") from e
        if not isinstance(params, dict):
            raise BadBody(400, f"the request must be a JSON object, not {type(params).__name__}")
        return params

    @staticmethod
    def _refuse(error: BadBody, start_response: Callable[..., Any]) -> Iterable[bytes]:
        payload = json.dumps({"__type": "SerializationException", "message": error.message}).encode()
        start_response(
            f"{error.status} Error",
            [
                ("Content-Type", "application/json"),
                ("x-amzn-ErrorType", "SerializationException"),
                ("Content-Length", str(len(payload))),
                ("Connection", "close"),
            ],
        )
        return [payload]

    def _json_call(
        self,
        service: JsonService,
        operation: str,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        content_type = environ.get("CONTENT_TYPE") or "application/x-amz-json-1.1"
        if self.on_request:
            self.on_request(environ.get("HTTP_X_AMZ_TARGET", ""), operation)
        try:
            params = self._json_params(self._body(environ))
        except BadBody as error:
            return self._refuse(error, start_response)
        try:
            result = service.handle(operation, params)
            payload = json.dumps(result, default=_aws_json_default).encode()
            status = "200 OK"
            headers = [("Content-Type", content_type)]
        except ServiceError as error:
            payload = json.dumps({"__type": error.code, "message": error.message}).encode()
            status = f"{error.status_code} Error"
            headers = [("Content-Type", content_type), ("x-amzn-ErrorType", error.code)]
        headers.append(("Content-Length", str(len(payload))))
        start_response(status, headers)
        return [payload]

    def _invoke_endpoint(
        self, endpoint_name: str, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        assert self.runtime is not None
        try:
            body = self._body(environ)
        except BadBody as error:
            return self._refuse(error, start_response)
        content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
        accept = environ.get("HTTP_ACCEPT") or "application/json"
        try:
            status_code, payload, payload_type = self.runtime.invoke_endpoint(
                endpoint_name, body, content_type, accept
            )
            headers = [("Content-Type", payload_type), ("x-Amzn-Invoked-Production-Variant", "AllTraffic")]
            status = f"{status_code} OK"
        except ServiceError as error:
            details: dict[str, Any] = {"message": error.message}
            for attribute, key in (
                ("original_status_code", "OriginalStatusCode"),
                ("original_message", "OriginalMessage"),
            ):
                if getattr(error, attribute, None) is not None:
                    details[key] = getattr(error, attribute)
            payload = json.dumps(details).encode()
            status = f"{error.status_code} Error"
            headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error.code)]
        headers.append(("Content-Length", str(len(payload))))
        start_response(status, headers)
        return [payload]


class GatewayServer:
    """Serves a Gateway on host:port in a background thread."""

    def __init__(self, app: Gateway, host: str = "127.0.0.1", port: int = 4566) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        # One access-log line per S3 object would bury the pipeline's progress.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # A client that stalls mid-request must not hold its thread forever.
        handler = type("TimedMotoRequestHandler", (MotoRequestHandler,), {"timeout": CLIENT_TIMEOUT})
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="gateway")

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GatewayServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for serve_forever, which a never-started server lacks
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()


def moto_wsgi_app() -> Callable[..., Iterable[bytes]]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)
