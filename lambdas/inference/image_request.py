"""Pure request logic of the inference Lambda: the endpoint to call, and a cheap check of the image."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import datasets, images, limits
from stepsage_lambda import naming
from stepsage_lambda.settings import declared, text

DEFAULT_TOP_K = limits.DEFAULT_TOP_K  # what the endpoint returns when the request names no top_k
MAX_TOP_K = limits.MAX_TOP_K
DEFAULT_MAX_PAYLOAD_BYTES = limits.MAX_ENDPOINT_PAYLOAD_BYTES
DEFAULT_MAX_IMAGE_PIXELS = limits.MAX_IMAGE_PIXELS
RAW_CONTENT_TYPES = images.GENERIC_MEDIA_TYPES
JSON_CONTENT_TYPE = "application/json"


class RequestRejected(Exception):
    """A request answered with a 4xx/5xx and a message; `status_code` is the HTTP status."""

    status_code = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class UnsupportedMediaType(RequestRejected):
    status_code = 415


class PayloadTooLarge(RequestRejected):
    status_code = 413


class EmptyImage(RequestRejected):
    pass


class UndecodableImage(RequestRejected):
    pass


class TooManyPixels(RequestRejected):
    # 400 rather than 413: a decompression bomb is a small body; what is refused is the image it claims.
    pass


class InvalidTopK(RequestRejected):
    pass


class InvalidRequest(RequestRejected):
    """A request whose framing is wrong: an unknown query parameter, a body that is not valid base64."""


class InvalidDataset(RequestRejected):
    pass


class EndpointNotFound(RequestRejected):
    status_code = 404


class EndpointRejected(RequestRejected):
    """The endpoint answered 4xx; its status and message pass through to the caller."""


class EndpointFailed(RequestRejected):
    status_code = 502


class EndpointUnavailable(RequestRejected):
    status_code = 503


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        return cls(
            max_payload_bytes=_positive_int(env, "MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES),
            max_image_pixels=_positive_int(env, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
        )


@dataclass(frozen=True)
class InferenceSettings:
    """InferenceFunction's environment, read once per cold start by its handler."""

    # Endpoint names are the deploy step's, per stack and dataset (stepsage_lambda.naming).
    stack_name: str
    # The dataset `POST /` serves (the ServedDataset parameter); empty when the URL has no default.
    served_dataset: str
    limits: Limits

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "STACK_NAME",
        "SERVED_DATASET",
        "MAX_PAYLOAD_BYTES",
        "MAX_IMAGE_PIXELS",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InferenceSettings:
        env = declared(env, cls)
        return cls(
            stack_name=text(env, "STACK_NAME", "stepsage"),
            served_dataset=(env.get("SERVED_DATASET") or "").strip(),
            limits=Limits.from_env(env),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{name} must be a positive integer; got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    media_type: str = "application/x-image"  # what the endpoint is told; it decodes every contract format


@dataclass(frozen=True)
class ClassifyRequest:
    image: bytes
    info: ImageInfo
    top_k: int | None = None  # None: the endpoint's default


# ---- image headers, read with the standard library only (contracts.images) ---------------------------


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes (lower case), or None."""
    fmt = images.sniff(data)
    return fmt.name.lower() if fmt else None


def image_info(data: bytes) -> ImageInfo:
    """Format and size from the header alone: no pixel is decoded, so a bomb costs nothing here."""
    try:
        info = images.inspect(data, max_pixels=2**63)
    except images.EmptyImage as e:
        raise EmptyImage(str(e)) from e
    except images.ImageError as e:
        raise UndecodableImage(str(e)) from e
    return ImageInfo(
        info.format.name.lower(), info.width, info.height, images.endpoint_media_type(info.format)
    )


# ---- which endpoint ----------------------------------------------------------------------------------


def dataset_endpoint_name(stack_name: str, dataset: str) -> str:
    """`POST /<dataset>` -> the endpoint this stack's deploy step gives that dataset."""
    if not datasets.is_valid_name(dataset):
        raise InvalidDataset(
            f"{dataset[:120]!r} is not a dataset name: use {datasets.NAME_RULE} "
            "(datasets/<name>.zip serves from POST /<name>)"
        )
    return naming.endpoint_name(stack_name, dataset)


def default_endpoint_name(stack_name: str, served_dataset: str) -> str:
    """`POST /` -> the endpoint of SERVED_DATASET (the stack's ServedDataset parameter)."""
    dataset = served_dataset.strip()
    if not dataset:
        raise EndpointNotFound(
            "this URL has no default endpoint (SERVED_DATASET is not set): POST /<dataset> to reach the "
            "endpoint of datasets/<dataset>.zip"
        )
    return dataset_endpoint_name(stack_name, dataset)


# ---- requests --------------------------------------------------------------------------------------


# A media type is `type/subtype` in token characters; a list ("image/png, image/jpeg", which is what a
# Function URL makes of two Content-Type headers) or anything else is no type at all.
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _unsupported(content_type: str | None) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"content type {limits.quote(content_type)} is not supported: send the image's bytes with "
        'Content-Type image/jpeg (or image/png ...), or JSON {"image": "<base64>"} as application/json'
    )


def parse_top_k(value: Any, *, from_query: bool = False) -> int:
    """top_k from a query string (digits) or a JSON body (an integer token); see contracts.limits."""
    try:
        return limits.top_k_from_query(value) if from_query else limits.top_k_from_json(value)
    except limits.RequestError as e:
        raise InvalidTopK(str(e)) from e


def query_top_k(query: Mapping[str, Any]) -> int | None:
    """The query string's top_k, or None. A POST names nothing else: an unknown parameter ("topk") is
    refused by name rather than silently giving the default."""
    unknown = [key for key in query if key != "top_k"]
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter(s) {', '.join(limits.quote(key) for key in unknown[:5])}: "
            "a POST takes only ?top_k=<1..100>"
        )
    value = query.get("top_k")
    if value is None or value == "":  # ?top_k= names no value: the default, as if absent
        return None
    if not isinstance(value, str):
        raise InvalidTopK(f"top_k must be digits in the query string; got {limits.quote(value)}")
    return parse_top_k(value, from_query=True)


def _json_request(body: bytes, limits_: Limits) -> tuple[bytes, int | None]:
    try:
        document = limits.request_document(body)
        image = limits.image_from_base64(document["image"], limits_.max_payload_bytes)
    except limits.ImageTooLarge as e:
        raise PayloadTooLarge(str(e)) from e
    except limits.RequestError as e:
        raise UndecodableImage(str(e)) from e
    top_k = document.get("top_k")
    return image, None if top_k is None else parse_top_k(top_k)


def parse_request(
    body: bytes, content_type: str | None, query: Mapping[str, Any], limits: Limits
) -> ClassifyRequest:
    """Validate a Function URL request: raw image bytes (image/*) or JSON {"image": base64, "top_k": k}.
    A top_k in both the query string and the body must agree: two different answers are refused."""
    if content_type is not None and not isinstance(content_type, str):
        raise _unsupported(content_type)
    kind = media_type(content_type)
    top_k = query_top_k(query)
    if not _MEDIA_TYPE.fullmatch(kind):
        raise _unsupported(content_type)
    if kind == JSON_CONTENT_TYPE:
        image, body_top_k = _json_request(body, limits)
        if top_k is not None and body_top_k is not None and top_k != body_top_k:
            raise InvalidTopK(
                f"top_k is {top_k} in the query string and {body_top_k} in the body: give it once"
            )
        top_k = body_top_k if body_top_k is not None else top_k
    elif kind.startswith("image/") or kind in RAW_CONTENT_TYPES:
        image = body
    else:
        raise _unsupported(content_type)
    if len(image) > limits.max_payload_bytes:
        raise PayloadTooLarge(f"the image is {len(image)} bytes; the limit is {limits.max_payload_bytes}")
    info = image_info(image)
    if info.width * info.height > limits.max_image_pixels:
        raise TooManyPixels(
            f"the image is {info.width}x{info.height} = {info.width * info.height} pixels; "
            f"the limit is {limits.max_image_pixels}"
        )
    return ClassifyRequest(image=image, info=info, top_k=top_k)


def endpoint_payload(request: ClassifyRequest, limits: Limits) -> tuple[bytes, str]:
    """The InvokeEndpoint body and content type. Raw bytes whenever the endpoint's default top-k covers the
    request (the answer is cut here); JSON only for a larger top_k, since base64 costs a third more."""
    if request.top_k is None or request.top_k <= DEFAULT_TOP_K:
        return request.image, request.info.media_type
    body = json.dumps({"image": base64.b64encode(request.image).decode("ascii"), "top_k": request.top_k})
    payload = body.encode("utf-8")
    if len(payload) > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"with top_k above {DEFAULT_TOP_K} the image travels as base64 ({len(payload)} bytes); the limit "
            f"is {limits.max_payload_bytes}: send a smaller image or top_k <= {DEFAULT_TOP_K}"
        )
    return payload, JSON_CONTENT_TYPE


def shape_response(document: Any, top_k: int | None) -> dict[str, Any]:
    """The endpoint's answer, cut to top_k; an answer without predictions is the endpoint's failure."""
    if not isinstance(document, dict) or not isinstance(document.get("predictions"), list):
        raise EndpointFailed("the endpoint answered without a predictions list")
    predictions = document["predictions"][:top_k] if top_k else document["predictions"]
    return {**document, "predictions": predictions}


def top1_confidence(response: Mapping[str, Any]) -> float | None:
    predictions = response.get("predictions") or []
    return float(predictions[0]["score"]) if predictions else None


def endpoint_error(original_status: Any, original_message: Any) -> RequestRejected:
    """Map the model container's own error (InvokeEndpoint's ModelError) to what the caller gets:
    its 4xx passes through with the container's message; anything else is a bad gateway."""
    message = str(original_message or "")
    try:
        parsed = json.loads(message)
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    except json.JSONDecodeError:
        pass
    status = int(original_status) if str(original_status or "").isdigit() else None
    if status is not None and 400 <= status < 500:
        return EndpointRejected(message or f"the model refused the request ({status})", status_code=status)
    return EndpointFailed(f"the model failed ({original_status}): {message}".rstrip(": "))
