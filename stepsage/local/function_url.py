"""A Lambda Function URL on loopback: HTTP requests become payload v2.0 events, results become responses."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.message import Message
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stepsage.local.errors import LambdaFunctionError
from stepsage.local.http_framing import LISTEN_BACKLOG, FramingError, StrictRequestHandler

LOG = logging.getLogger(__name__)
# Function URLs take at most 6 MB per request and response (BUFFERED mode).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "+json", "+xml")


def _is_text(content_type: str) -> bool:
    lowered = content_type.lower()
    return any(marker in lowered for marker in _TEXT_TYPES)


def _joined(pairs: Iterable[tuple[str, str]], lower: bool = False) -> dict[str, str]:
    """Repeated keys joined with commas, as Function URLs do for headers and query parameters."""
    joined: dict[str, str] = {}
    for key, value in pairs:
        key = key.lower() if lower else key
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _text_body(body: bytes, content_type: str) -> str | None:
    """The body as the event's text, or None when it travels as base64: a text type that is valid UTF-8."""
    if not _is_text(content_type):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def request_event(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str] | Message,
    body: bytes,
    url_id: str,
    source_ip: str,
) -> dict[str, Any]:
    """The event a Function URL gives its function (payload format 2.0)."""
    parts = urlsplit(target)
    lowered = _joined(headers.items(), lower=True)
    now = datetime.now(UTC)
    domain = f"{url_id}.lambda-url.us-east-1.on.aws"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": {**lowered, "host": domain},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": domain,
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if parts.query:
        event["queryStringParameters"] = _joined(parse_qsl(parts.query, keep_blank_values=True))
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered["cookie"].split(";") if c.strip()]
    if body:
        text = _text_body(body, lowered.get("content-type", ""))
        if text is not None:
            event["body"] = text
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def response_from_result(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Turn a function's result into status, headers and body as Function URLs do."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # A result without statusCode is returned as a 200 JSON body.
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers.setdefault("content-type", "application/json")
    return int(result["statusCode"]), headers, raw


class _UrlHTTPServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG


class FunctionUrlServer:
    """Serves one function over HTTP. Locally there is no SigV4 check: a documented deviation from AWS_IAM."""

    def __init__(
        self,
        invoke: Callable[[dict[str, Any]], Any],
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[str, int, float], None] | None = None,
        idle_timeout: float = 60.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.invoke = invoke
        self.on_request = on_request
        self.url_id = uuid.uuid4().hex[:32]
        server = self

        class Handler(StrictRequestHandler):
            error_key = "Message"  # as the Function URL front end spells its own errors
            timeout = idle_timeout
            body_timeout = read_timeout

            def log_message(self, format: str, *args: Any) -> None:  # quiet: on_request reports instead
                return

            def _handle(self) -> None:
                started = time.perf_counter()
                try:
                    body = self.read_body(MAX_PAYLOAD_BYTES)
                except FramingError as error:
                    if error.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
                        error.message = (
                            f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction "
                            "operation"
                        )
                    self.send_framing_error(error)
                    if server.on_request:
                        server.on_request(self.command, error.status, time.perf_counter() - started)
                    return
                event = request_event(
                    method=self.command,
                    target=self.path,
                    headers=self.headers,
                    body=body,
                    url_id=server.url_id,
                    source_ip=self.client_address[0],
                )
                try:
                    status, headers, payload = response_from_result(server.invoke(event))
                except LambdaFunctionError as error:
                    LOG.warning("function URL %s %s: the function failed: %s", self.command, self.path, error)
                    status, headers, payload = (
                        502,
                        {"content-type": "application/json"},
                        b'{"Message":"Internal Server Error"}',
                    )
                if len(payload) > MAX_PAYLOAD_BYTES:
                    status, headers, payload = (
                        502,
                        {"content-type": "application/json"},
                        b'{"Message":"Response too large"}',
                    )
                self._send(status, headers, payload)
                if server.on_request:
                    server.on_request(self.command, status, time.perf_counter() - started)

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        self.httpd = _UrlHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="function-url")

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> FunctionUrlServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
