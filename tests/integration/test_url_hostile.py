"""Hostile requests against the inference Lambda's handler, the local Function URL and the model server:
every one gets a 4xx (never a 5xx, a hang or a silent close), and the servers keep serving after it."""

from __future__ import annotations

import base64
import copy
import http.client
import io
import json
import socket
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from lambda_harness import FakeLambdaContext, load_event, load_lambda_module
from PIL import Image
from raw_http import exchange, framing_cases
from test_model_server import SLOW_ECHO, RunningServer, fake_model_dir, start_server

from stepsage.local.errors import LambdaFunctionError
from stepsage.local.function_url import FunctionUrlServer

pytestmark = pytest.mark.integration

app = load_lambda_module("inference", "app")
from botocore.stub import Stubber  # noqa: E402

from stepsage_lambda import clients  # noqa: E402

ANSWER = {"predictions": [{"label": str(i), "score": 0.1} for i in range(5)], "model": {"architecture": "x"}}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


class FakeRuntime:
    """The endpoint, answering every well-formed request; records what reached it."""

    calls: list[tuple[bytes, str]] = []

    def __init__(self, endpoint_name: str) -> None:
        self.endpoint_name = endpoint_name

    def classify(self, body: bytes, content_type: str) -> dict[str, Any]:
        FakeRuntime.calls.append((body, content_type))
        return copy.deepcopy(ANSWER)


@pytest.fixture
def fake_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # POST / serves <stack>-<ServedDataset>: "stepsage-dogs" (stepsage_lambda.naming.endpoint_name).
    monkeypatch.setenv("STACK_NAME", "stepsage")
    monkeypatch.setenv("SERVED_DATASET", "dogs")
    monkeypatch.setattr(app, "EndpointRuntime", FakeRuntime)
    FakeRuntime.calls = []


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """The handler as the local Lambda runtime runs it: an exception is the function's failure (a 502)."""
    try:
        return app.lambda_handler(event, FakeLambdaContext())
    except Exception as e:
        raise LambdaFunctionError(type(e).__name__, str(e), traceback.format_exc().splitlines()) from e


def _event(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event("inference_post_image"))
    event.update(changes)
    return event


# ---- the handler, on hostile Function URL events -----------------------------------------------------


def hostile_events() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for body in ("!!!!", "abc", "a===", "YQ=", "Y\x00Q=", "é", "YWJj\n====", "=" * 7, "a" * 4001):
        cases.append((f"invalid base64 {body[:10]!r}", _event(body=body, isBase64Encoded=True)))
    for body in (5, ["a"], {"image": "x"}, True):
        cases.append((f"body of type {type(body).__name__}", _event(body=body)))
    json_headers = {"content-type": "application/json", "host": "x"}
    for body in (
        '{"image": "\ud800"}',
        "\ud800",
        '{"image": "QQ", "image": "QQ"}',
        "[" * 10_000,
        '{"image": "' + base64.b64encode(PNG).decode() + '", "top_k": ' + "9" * 5000 + "}",
        '{"image": "' + base64.b64encode(PNG).decode() + '", "top_k": NaN}',
        '{"image": "' + base64.b64encode(PNG).decode() + '", "topk": 3}',
    ):
        cases.append((f"JSON {body[:20]!r}", _event(body=body, isBase64Encoded=False, headers=json_headers)))
    for content_type in ("image/png, image/jpeg", "", "text/plain", "image/", "\x00", "a" * 10_000):
        cases.append((f"content-type {content_type[:20]!r}", _event(headers={"content-type": content_type})))
    cases.append(("no headers", _event(headers=None)))
    cases.append(("no content-type", _event(headers={"host": "x"})))
    for query in (
        {"top_k": "1,2"},
        {"top_k": "\ufffd"},
        {"top_k": "\uff15"},
        {"top_k": "1_0"},
        {"x": "1"},
        {"top_k": 3},
    ):
        cases.append((f"query {query!r}", _event(queryStringParameters=query)))
    for path in (
        "/%FF",
        "/..",
        "/a/b",
        "/" + "a" * 10_000,
        "/\u0000",
        "/dogs%2Fcats",
        "/\u00fcn\u00efcode",
        "//",
        "/ ",
    ):
        event = _event()
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        cases.append((f"path {path[:20]!r}", event))
    for method in ("PUT", "DELETE", "BREW", "", "GET\x00"):
        event = _event()
        event["requestContext"]["http"]["method"] = method
        cases.append((f"method {method!r}", event))
    return cases


HOSTILE_EVENTS = hostile_events()


@pytest.mark.parametrize("event", [e for _, e in HOSTILE_EVENTS], ids=[n for n, _ in HOSTILE_EVENTS])
def test_hostile_events_get_a_4xx_and_never_reach_the_endpoint(
    fake_endpoint: None, event: dict[str, Any]
) -> None:
    response = handle(event)
    assert 400 <= response["statusCode"] < 500, response
    document = json.loads(response["body"])
    assert document["error"] and len(document["message"]) < 1000
    assert FakeRuntime.calls == []


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    # POST / serves <stack>-<ServedDataset>: "stepsage-dogs" (stepsage_lambda.naming.endpoint_name).
    monkeypatch.setenv("STACK_NAME", "stepsage")
    monkeypatch.setenv("SERVED_DATASET", "dogs")
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "MAX_PAYLOAD_BYTES"):
        monkeypatch.delenv(variable, raising=False)
    clients.client.cache_clear()
    with Stubber(clients.client("sagemaker-runtime")) as stubber:
        yield stubber
    clients.client.cache_clear()


@pytest.mark.parametrize(
    "status", [*range(400, 430), 431, 451, 499, 500, 501, 502, 503, 504, 507, 599, 200, 302]
)
def test_the_model_containers_status_passes_through_when_it_is_a_client_error(
    runtime: Stubber, status: int
) -> None:
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": status,
            "OriginalMessage": json.dumps({"message": f"said {status}"}),
        },
    )
    response = handle(load_event("inference_post_image"))
    document = json.loads(response["body"])
    if 400 <= status < 500:
        assert (response["statusCode"], document["error"]) == (status, "EndpointRejected")
        assert document["message"] == f"said {status}"
    else:  # the model's own failure: a bad gateway, never a 2xx or 3xx that would look like an answer
        assert (response["statusCode"], document["error"]) == (502, "EndpointFailed")


# ---- the local Function URL over real sockets, with the real handler ----------------------------------


@pytest.fixture
def url_server(fake_endpoint: None) -> Iterator[FunctionUrlServer]:
    server = FunctionUrlServer(handle, read_timeout=1.0, idle_timeout=5.0).start()
    yield server
    server.stop()


def _port(server: FunctionUrlServer) -> int:
    return int(server.httpd.server_address[1])


def _good_request(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", "/?top_k=2", body=PNG, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        document = json.loads(response.read())
        assert len(document["predictions"]) == 2
        return response.status
    finally:
        connection.close()


URL_FRAMING = framing_cases("/")


@pytest.mark.parametrize(
    ("data", "expected", "half_close"), [c[1:] for c in URL_FRAMING], ids=[c[0] for c in URL_FRAMING]
)
def test_function_url_framing(
    url_server: FunctionUrlServer, data: bytes, expected: int | None, half_close: bool
) -> None:
    answer = exchange(_port(url_server), data, half_close=half_close)
    assert answer.status is not None, answer.head
    assert answer.status == expected if expected else 200 <= answer.status < 500, answer
    assert _good_request(_port(url_server)) == 200


def url_query_cases() -> list[tuple[str, bytes]]:
    targets = [
        b"/?top_k=1&top_k=2",
        b"/?top_k=2&top_k=2",
        b"/?top_k=%FF",
        b"/?top_k=%EF%BC%95",  # fullwidth 5
        b"/?top_k=%C2%B2",  # superscript 2
        b"/?top_k=1%2C2",
        b"/?top_k=+3",
        b"/?top_k=3.0",
        b"/?top_k=1e2",
        b"/?top_k=1_0",
        b"/?top_k=%",
        b"/?top_k=%zz",
        b"/?=3",
        b"/?top_k=3;x=1",
        b"/?top_k=" + b"9" * 5000,
        b"/?" + b"a=1&" * 5000,
        b"/%FF",
        b"/%00",
        b"/%2e%2e",
        b"/..%2f..",
        b"/dogs/cats",
        b"/\xff\xfe",
        b"/" + b"d" * 5000,
        b"*",
    ]
    return [(t.decode("latin-1")[:40], t) for t in targets]


# Odd but well-formed: a key without a value names no top_k; empty pairs name nothing; an absolute-form
# target names the path "/".
ODD_BUT_VALID = [b"/?top_k", b"/?top_k=", b"/?&&&", b"http://evil.example/?top_k=2"]


URL_QUERIES = url_query_cases()


@pytest.mark.parametrize("target", [t for _, t in URL_QUERIES], ids=[n for n, _ in URL_QUERIES])
def test_function_url_queries_and_paths_get_a_4xx(url_server: FunctionUrlServer, target: bytes) -> None:
    data = (
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: " + str(len(PNG)).encode() + b"\r\nConnection: close\r\n\r\n" + PNG
    )
    answer = exchange(_port(url_server), data)
    if target in (b"/?top_k=2&top_k=2",):
        assert answer.status == 400  # a repeated key is refused even when the values agree
    assert answer.status is not None and 400 <= answer.status < 500, (target, answer)
    assert json.loads(answer.body)
    assert FakeRuntime.calls == []


@pytest.mark.parametrize("target", ODD_BUT_VALID)
def test_function_url_odd_but_valid_targets_are_answered(
    url_server: FunctionUrlServer, target: bytes
) -> None:
    data = (
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: " + str(len(PNG)).encode() + b"\r\nConnection: close\r\n\r\n" + PNG
    )
    answer = exchange(_port(url_server), data)
    assert answer.status == 200, (target, answer)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Type: image/png\r\nContent-Type: image/jpeg\r\n",
        b"Content-Type: text/plain\r\n",
        b"Content-Type: \xff\xfe\r\n",
        b"Content-Type: application/json\r\n",  # the PNG is not JSON
        b"Content-Type: application/json; charset=utf-16\r\n",
        b"Content-Type: " + b"image/" * 5000 + b"\r\n",
        b"",
    ],
)
def test_function_url_content_type_oddities_get_a_4xx(url_server: FunctionUrlServer, headers: bytes) -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\n"
        + headers
        + b"Content-Length: "
        + str(len(PNG)).encode()
        + b"\r\n\r\n"
        + PNG
    )
    answer = exchange(_port(url_server), data)
    assert answer.status is not None and 400 <= answer.status < 500, answer
    assert _good_request(_port(url_server)) == 200


def test_function_url_sends_non_utf8_text_as_base64_so_the_handler_refuses_it(
    url_server: FunctionUrlServer,
) -> None:
    body = b'{"image": "\xff"}'
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n" + body
    )
    answer = exchange(_port(url_server), data)
    assert answer.status == 400
    assert "UTF-8" in json.loads(answer.body)["message"]


def test_function_url_answers_408_to_a_body_that_never_arrives(url_server: FunctionUrlServer) -> None:
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\nabc"
    answer = exchange(_port(url_server), data)
    assert answer.status == 408
    assert answer.seconds < 5


def test_function_url_answers_408_to_a_body_that_trickles(url_server: FunctionUrlServer) -> None:
    """A byte every 0.3 s never trips a per-read timeout; the whole body still has a deadline."""
    with socket.create_connection(("127.0.0.1", _port(url_server)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"x")
            except OSError:
                break
            time.sleep(0.3)
            sock.setblocking(False)
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_function_url_keeps_serving_while_slow_clients_hang(url_server: FunctionUrlServer) -> None:
    stalled = [socket.create_connection(("127.0.0.1", _port(url_server)), timeout=10) for _ in range(20)]
    try:
        for index, sock in enumerate(stalled):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" if index % 2 else b"POS")
        assert _good_request(_port(url_server)) == 200
    finally:
        for sock in stalled:
            sock.close()


# ---- the model server (a fake inference.py: the server's framing, not the model) ----------------------


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    model_dir = fake_model_dir(tmp_path_factory.mktemp("echo"), SLOW_ECHO.format(load_seconds=0))
    running = start_server(model_dir, "--max-request-bytes", "100000", "--read-timeout", "1")
    yield running
    assert running.stop() == 0


MODEL_FRAMING = framing_cases("/invocations")


@pytest.mark.parametrize(
    ("data", "expected", "half_close"), [c[1:] for c in MODEL_FRAMING], ids=[c[0] for c in MODEL_FRAMING]
)
def test_model_server_framing(
    echo_server: RunningServer, data: bytes, expected: int | None, half_close: bool
) -> None:
    answer = exchange(echo_server.port, data, half_close=half_close)
    assert answer.status is not None, answer.head
    assert answer.status == expected if expected else 200 <= answer.status < 500, answer
    assert echo_server.invoke(b"still here", "text/plain")[0] == 200


def test_model_server_answers_408_to_a_body_that_never_arrives(echo_server: RunningServer) -> None:
    data = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc"
    )
    answer = exchange(echo_server.port, data)
    assert answer.status == 408
    assert echo_server.invoke(b"still here", "text/plain")[0] == 200


def test_model_server_reads_a_chunked_body(echo_server: RunningServer) -> None:
    data = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    answer = exchange(echo_server.port, data)
    assert answer.status == 200
    assert json.loads(answer.body)["echo"] == "hello world"


def test_model_server_keeps_a_connection_alive_after_a_good_request_only(echo_server: RunningServer) -> None:
    good = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(good + good)
        time.sleep(0.5)
        received = sock.recv(65536)
    assert received.count(b"HTTP/1.1 200") == 2


def test_fixtures_cover_the_named_classes() -> None:
    names = {name for name, *_ in URL_FRAMING}
    assert {"HTTP/0.9 GET", "garbage line", "missing Host", "chunked", "request line too long"} <= names
    assert len(URL_FRAMING) >= 45 and len(HOSTILE_EVENTS) >= 45


# ---- the gateway (SageMaker and Step Functions JSON calls, InvokeEndpoint) ------------------------------


class EchoService:
    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"operation": operation, "keys": sorted(params)}


class EchoRuntime:
    def invoke_endpoint(
        self, endpoint_name: str, body: bytes, content_type: str, accept: str
    ) -> tuple[int, bytes, str]:
        return 200, json.dumps({"length": len(body)}).encode(), "application/json"


@pytest.fixture(scope="module")
def gateway_port() -> Iterator[int]:
    from stepsage.local.gateway import Gateway, GatewayServer

    def no_moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    server = GatewayServer(Gateway(no_moto, {"SageMaker": EchoService()}, EchoRuntime()), port=0).start()
    yield int(server.server.server_address[1])
    server.stop()


def _json_call(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.ListEndpoints\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


GATEWAY_CASES = [
    ("not JSON", _json_call(b"{broken"), 400),
    ("a list", _json_call(b"[1, 2]"), 400),
    ("a string", _json_call(b'"x"'), 400),
    ("nested 10,000 deep", _json_call(b"[" * 10_000 + b"]" * 10_000), 400),
    ("a 5,000-digit number", _json_call(b'{"a": ' + b"1" * 5000 + b"}"), 400),
    ("not UTF-8", _json_call(b'{"a": "\xff"}'), 400),
    ("an object", _json_call(b'{"MaxResults": 5}'), 200),
    (
        "bad Content-Length",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.ListEndpoints\r\n"
        b"Content-Length: abc\r\n\r\n{}",
        400,
    ),
    (
        "Content-Length beyond the limit",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.ListEndpoints\r\n"
        b"Content-Length: 99999999999\r\n\r\n{}",
        413,
    ),
    (
        "chunked InvokeEndpoint",
        b"POST /endpoints/e/invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        200,
    ),
    (
        "InvokeEndpoint with a bad length",
        b"POST /endpoints/e/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc",
        400,
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in GATEWAY_CASES], ids=[c[0] for c in GATEWAY_CASES]
)
def test_gateway_refuses_bad_bodies_with_a_4xx(gateway_port: int, data: bytes, expected: int) -> None:
    answer = exchange(gateway_port, data)
    assert answer.status == expected, answer
