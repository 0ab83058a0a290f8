"""The inference Lambda's handler on Function URL events, with SageMaker Runtime stubbed by shape."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from lambda_harness import FakeLambdaContext, load_event, load_lambda_module, streaming

pytestmark = pytest.mark.integration

app = load_lambda_module("inference", "app")
from botocore.stub import Stubber  # noqa: E402

from stepsage_lambda import clients  # noqa: E402
from stepsage_lambda.naming import endpoint_name  # noqa: E402

STACK = "stepsage-test"
SERVED = "dogs"
# Issue 9: each stack's own endpoint for the dataset, named as the deploy step names it.
ENDPOINT = endpoint_name(STACK, SERVED)
assert ENDPOINT == "stepsage-test-dogs"
ANSWER: dict[str, Any] = {
    "predictions": [{"label": f"00{i}.breed", "score": round(0.5 / (i + 1), 4)} for i in range(5)],
    "model": {"architecture": "resnet18", "num_classes": 133, "serving": {"mode": "fp32"}},
}


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    monkeypatch.setenv("STACK_NAME", STACK)
    monkeypatch.setenv("SERVED_DATASET", SERVED)
    app.settings.cache_clear()
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "MAX_PAYLOAD_BYTES"):
        monkeypatch.delenv(variable, raising=False)
    clients.client.cache_clear()
    # The factory caches its clients, so stubbing the instance it hands out stubs the handler's calls.
    with Stubber(clients.client("sagemaker-runtime")) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()
    clients.client.cache_clear()
    app.settings.cache_clear()


def _invoke(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.lambda_handler(event, FakeLambdaContext())
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"
    return response["statusCode"], json.loads(response["body"])


def _at(event: dict[str, Any], path: str, method: str | None = None) -> dict[str, Any]:
    moved = copy.deepcopy(event)
    moved["rawPath"] = moved["requestContext"]["http"]["path"] = path
    if method:
        moved["requestContext"]["http"]["method"] = method
    return moved


def _event_body(event: dict[str, Any]) -> bytes:
    body = event["body"]
    return base64.b64decode(body) if event["isBase64Encoded"] else body.encode()


def _raw_event(data: bytes, content_type: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("inference_post_image"))
    event["body"] = base64.b64encode(data).decode()
    event["headers"]["content-type"] = content_type
    event["queryStringParameters"] = query or {}
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    return event


def _emf_metrics(captured: str) -> dict[str, Any]:
    """The metrics the handler flushed as CloudWatch EMF lines on stdout."""
    for line in captured.splitlines():
        if line.startswith("{") and "_aws" in line:
            return json.loads(line)
    raise AssertionError(f"no EMF line in {captured!r}")


def _ok(
    stubber: Stubber,
    body: bytes,
    content_type: str,
    answer: dict[str, Any] = ANSWER,
    endpoint: str = ENDPOINT,
) -> None:
    payload = json.dumps(answer).encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": streaming(payload), "ContentType": "application/json"},
        expected_params={
            "EndpointName": endpoint,
            "Body": body,
            "ContentType": content_type,
            "Accept": "application/json",
        },
    )


# ---- the happy paths ---------------------------------------------------------------------------------


def test_raw_image_event_forwards_the_bytes_and_cuts_to_top_k(
    runtime: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event("inference_post_image")
    _ok(runtime, _event_body(event), "image/jpeg")
    status, document = _invoke(event)
    assert status == 200
    assert document["predictions"] == ANSWER["predictions"][:3]  # ?top_k=3 in the event
    assert document["model"]["architecture"] == "resnet18"
    emf = _emf_metrics(capsys.readouterr().out)
    assert emf["EndpointName"] == ENDPOINT
    assert emf["Top1Confidence"] == [0.5]  # EMF values are lists
    assert emf["EndpointLatency"][0] >= 0
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"EndpointLatency", "Top1Confidence"} <= names


def test_json_event_sends_the_decoded_image_raw(runtime: Stubber) -> None:
    event = load_event("inference_post_json")
    image = base64.b64decode(json.loads(event["body"])["image"])
    _ok(runtime, image, "image/png")
    status, document = _invoke(event)
    assert status == 200
    assert [p["label"] for p in document["predictions"]] == ["000.breed", "001.breed"]


def test_a_top_k_above_the_default_travels_as_json(runtime: Stubber) -> None:
    event = copy.deepcopy(load_event("inference_post_json"))
    request = json.loads(event["body"])
    request["top_k"] = 8
    event["body"] = json.dumps(request)
    many = {**ANSWER, "predictions": ANSWER["predictions"] * 2}
    forwarded = json.dumps({"image": request["image"], "top_k": 8}).encode()
    _ok(runtime, forwarded, "application/json", many)
    status, document = _invoke(event)
    assert status == 200
    assert len(document["predictions"]) == 8


def test_a_sniffed_format_overrides_the_declared_one(runtime: Stubber) -> None:
    png = _pillow_png()
    _ok(runtime, png, "image/png")
    assert _invoke(_raw_event(png, "image/jpeg"))[0] == 200


def _pillow_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc


# ---- refused before the endpoint (the stubber has nothing queued: a call would fail the test) ------


@pytest.mark.parametrize(
    ("data", "content_type", "query", "status", "error"),
    [
        (b"\xff\xd8\xff\xe0", "text/plain", None, 415, "UnsupportedMediaType"),
        (b"\x89PNG", "application/x-www-form-urlencoded", None, 415, "UnsupportedMediaType"),
        (b"GIF89a\x01", "image/gif", None, 400, "UndecodableImage"),
        (b"just some words", "image/jpeg", None, 400, "UndecodableImage"),
        (b"", "image/jpeg", None, 400, "EmptyImage"),
        (_png_bomb(100_000, 100_000), "image/png", None, 400, "TooManyPixels"),
        (_png_bomb(20, 20), "image/png", {"top_k": "0"}, 400, "InvalidTopK"),
    ],
)
def test_bad_requests_never_reach_the_endpoint(
    runtime: Stubber, data: bytes, content_type: str, query: dict[str, str] | None, status: int, error: str
) -> None:
    got_status, document = _invoke(_raw_event(data, content_type, query))
    assert (got_status, document["error"]) == (status, error)
    assert document["message"]


def test_oversize_is_413_under_the_configured_limit(
    runtime: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = load_event("inference_post_image")
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(len(_event_body(event)) - 1))
    status, document = _invoke(event)
    assert (status, document["error"]) == (413, "PayloadTooLarge")


def test_bad_json_is_400(runtime: Stubber) -> None:
    event = copy.deepcopy(load_event("inference_post_json"))
    event["body"] = '{"image": "not*base64"}'
    status, document = _invoke(event)
    assert (status, document["error"]) == (400, "UndecodableImage")


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/dogs/predict"), ("POST", "/dogs/"), ("DELETE", "/"), ("PUT", "/dogs")]
)
def test_other_routes_are_404_with_the_routes_named(runtime: Stubber, method: str, path: str) -> None:
    status, document = _invoke(_at(load_event("inference_post_image"), path, method))
    assert (status, document["error"]) == (404, "NotFound")
    assert f"{method} {path}" in document["message"]
    assert "POST an image to / or /<dataset>" in document["message"]


# ---- one endpoint per dataset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "endpoint"),
    [("dogImages", "stepsage-test-dogImages"), ("cats-v2", endpoint_name(STACK, "cats-v2"))],
)
def test_post_to_a_dataset_calls_its_endpoint(runtime: Stubber, dataset: str, endpoint: str) -> None:
    event = _at(load_event("inference_post_image"), f"/{dataset}")
    _ok(runtime, _event_body(event), "image/jpeg", endpoint=endpoint)
    status, document = _invoke(event)
    assert status == 200
    assert document["predictions"] == ANSWER["predictions"][:3]


def test_the_dataset_event_reaches_the_deploy_steps_endpoint_name(runtime: Stubber) -> None:
    event = load_event("inference_post_dataset")
    dataset = event["rawPath"].strip("/")
    _ok(runtime, _event_body(event), "image/jpeg", endpoint=endpoint_name(STACK, dataset))
    assert _invoke(event)[0] == 200


def test_a_dataset_name_outside_the_deploy_alphabet_gets_its_hashed_endpoint(runtime: Stubber) -> None:
    event = _at(load_event("inference_post_image"), "/dog_breeds.v2")
    _ok(runtime, _event_body(event), "image/jpeg", endpoint=endpoint_name(STACK, "dog_breeds.v2"))
    assert _invoke(event)[0] == 200


@pytest.mark.parametrize("path", ["/dog%20breeds", "/-dogs", "/" + "x" * 101, "/..", "/%2e%2e"])
def test_a_segment_that_no_dataset_can_have_is_400_before_any_call(runtime: Stubber, path: str) -> None:
    status, document = _invoke(_at(load_event("inference_post_image"), path))
    assert (status, document["error"]) == (400, "InvalidDataset")
    assert "letters, digits" in document["message"]


def test_an_unknown_datasets_endpoint_is_404_with_its_name(runtime: Stubber) -> None:
    event = _at(load_event("inference_post_image"), "/nosuchset")
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message="Endpoint stepsage-test-nosuchset of account 123456789012 not found.",
        http_status_code=400,
        expected_params={
            "EndpointName": "stepsage-test-nosuchset",
            "Body": _event_body(event),
            "ContentType": "image/jpeg",
            "Accept": "application/json",
        },
    )
    status, document = _invoke(event)
    assert (status, document["error"]) == (404, "EndpointNotFound")
    assert "stepsage-test-nosuchset" in document["message"] and "not found" in document["message"]


def test_without_a_default_endpoint_root_is_404_and_datasets_still_serve(
    runtime: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SERVED_DATASET")
    app.settings.cache_clear()
    event = load_event("inference_post_image")
    status, document = _invoke(event)
    assert (status, document["error"]) == (404, "EndpointNotFound")
    assert "SERVED_DATASET" in document["message"]
    _ok(runtime, _event_body(event), "image/jpeg", endpoint="stepsage-test-dogs")
    assert _invoke(_at(event, "/dogs"))[0] == 200


# ---- the page -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/dogImages"])
def test_get_serves_the_page_with_its_security_headers(
    runtime: Stubber, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    response = app.lambda_handler(_at(load_event("inference_get_page"), path), FakeLambdaContext())
    assert _emf_metrics(capsys.readouterr().out)["PageViews"] == [1.0]
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is False
    headers = response["headers"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe" not in policy
    assert response["body"] == app.PAGE.html
    assert response["body"].startswith("<!doctype html>")


def test_get_of_a_name_no_dataset_can_have_is_400(runtime: Stubber) -> None:
    status, document = _invoke(_at(load_event("inference_get_page"), "/not%20a%20dataset"))
    assert (status, document["error"]) == (400, "InvalidDataset")


# ---- the endpoint's own errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "http_status", "modeled", "status", "error", "message_part"),
    [
        (
            "ModelError",
            424,
            {
                "OriginalStatusCode": 400,
                "OriginalMessage": '{"message": "the image is corrupt or truncated"}',
            },
            400,
            "EndpointRejected",
            "the image is corrupt",
        ),
        (
            "ModelError",
            424,
            {"OriginalStatusCode": 415, "OriginalMessage": '{"message": "content type nope"}'},
            415,
            "EndpointRejected",
            "content type nope",
        ),
        (
            "ModelError",
            424,
            {"OriginalStatusCode": 500, "OriginalMessage": '{"message": "model error: RuntimeError: boom"}'},
            502,
            "EndpointFailed",
            "boom",
        ),
        ("ModelNotReadyException", 429, {}, 503, "EndpointUnavailable", "not ready"),
        ("ServiceUnavailable", 503, {}, 503, "EndpointUnavailable", "not ready"),
        ("ValidationError", 400, {}, 404, "EndpointNotFound", "does not exist or is not in service"),
        ("ThrottlingException", 400, {}, 503, "EndpointUnavailable", "busy"),
        ("InternalFailure", 500, {}, 503, "EndpointUnavailable", "busy"),
        # Issue 9: the function may invoke only its own stack's endpoints; another stack's is not served here.
        ("AccessDeniedException", 403, {}, 404, "EndpointNotFound", "belongs to another stack"),
    ],
)
def test_endpoint_errors_map_to_clear_statuses(
    runtime: Stubber,
    code: str,
    http_status: int,
    modeled: dict[str, Any],
    status: int,
    error: str,
    message_part: str,
) -> None:
    event = load_event("inference_post_image")
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=f"{code} from the stub",
        http_status_code=http_status,
        modeled_fields=modeled or None,
        expected_params={
            "EndpointName": ENDPOINT,
            "Body": _event_body(event),
            "ContentType": "image/jpeg",
            "Accept": "application/json",
        },
    )
    got_status, document = _invoke(event)
    assert (got_status, document["error"]) == (status, error)
    assert message_part in document["message"]


def test_an_answer_that_is_not_json_is_a_bad_gateway(runtime: Stubber) -> None:
    event = load_event("inference_post_image")
    runtime.add_response("invoke_endpoint", {"Body": streaming(b"<html>oops</html>")})
    status, document = _invoke(event)
    assert (status, document["error"]) == (502, "EndpointFailed")


def test_rejections_count_as_a_metric(runtime: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    _invoke(_raw_event(b"words", "text/plain"))
    emf = _emf_metrics(capsys.readouterr().out)
    assert emf["RejectedRequests"] == [1.0]
    assert "Top1Confidence" not in emf
