"""Inference: POST an image to the Function URL (`/` or `/<dataset>`) for top-k labels; GET it for a page."""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from endpoint_runtime import EndpointRuntime
from image_request import (
    InferenceSettings,
    InvalidRequest,
    RequestRejected,
    dataset_endpoint_name,
    default_endpoint_name,
    endpoint_payload,
    parse_request,
    shape_response,
    top1_confidence,
)
from inference_page import load_page

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "stepsage")
app = LambdaFunctionUrlResolver()
PAGE = load_page()  # once per cold start; a package without page.html fails at init, loudly


@cache
def settings() -> InferenceSettings:
    """Read once per cold start; a bad value fails the first request and names the variable."""
    return InferenceSettings.from_env(os.environ)


def request_body() -> bytes:
    event = app.current_event
    body = event.body or ""
    if not isinstance(body, str):
        raise InvalidRequest(f"the event's body must be a string; got {type(body).__name__}")
    if not event.is_base64_encoded:
        # A lone surrogate survives as bytes that are not UTF-8, which the JSON parser then refuses by name.
        return body.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequest(f"the event says isBase64Encoded, but its body is not valid base64: {e}") from e


@app.get("/")
def page() -> Response:
    metrics.add_metric(name="PageViews", unit=MetricUnit.Count, value=1)
    return Response(status_code=200, body=PAGE.html, headers=dict(PAGE.headers))


@app.get("/<dataset>")
def dataset_page(dataset: str) -> Response:
    # A name no dataset can have gets its 400 here, not after an upload.
    dataset_endpoint_name(settings().stack_name, dataset)
    return page()


@app.post("/")
def classify_default() -> dict[str, Any]:
    return classify(default_endpoint_name(settings().stack_name, settings().served_dataset))


@app.post("/<dataset>")
def classify_dataset(dataset: str) -> dict[str, Any]:
    return classify(dataset_endpoint_name(settings().stack_name, dataset))


def classify(endpoint_name: str) -> dict[str, Any]:
    metrics.add_dimension(name="EndpointName", value=endpoint_name)
    limits = settings().limits
    event = app.current_event
    request = parse_request(
        request_body(), event.headers.get("content-type"), event.query_string_parameters, limits
    )
    payload, content_type = endpoint_payload(request, limits)
    started = time.perf_counter()
    answer = EndpointRuntime(endpoint_name).classify(payload, content_type)
    metrics.add_metric(
        name="EndpointLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
    )
    result = shape_response(answer, request.top_k)
    confidence = top1_confidence(result)
    if confidence is not None:
        metrics.add_metric(name="Top1Confidence", unit=MetricUnit.NoUnit, value=confidence)
    logger.info("classified", extra={"image": request.info.__dict__, "top1": result["predictions"][:1]})
    return result


@app.exception_handler(RequestRejected)
def rejected(error: RequestRejected) -> Response:
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    logger.info("request rejected", extra={"status": error.status_code, "reason": type(error).__name__})
    return Response(
        status_code=error.status_code,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"message": error.message, "error": type(error).__name__}),
    )


@app.not_found
def no_route(error: Exception) -> Response:
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    event = app.current_event
    return Response(
        status_code=404,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(
            {
                "message": f"no route for {event.http_method} {event.path}: GET / or /<dataset> for the "
                "page, POST an image to / or /<dataset> for labels",
                "error": "NotFound",
            }
        ),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    # JSON answers and 404s too: no browser may read any of them as another type.
    response.setdefault("headers", {})["X-Content-Type-Options"] = "nosniff"
    return response
