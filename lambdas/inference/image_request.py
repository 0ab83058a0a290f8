"""Pure request logic of the inference Lambda: the endpoint to call, and a cheap check of the image."""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from stepsage_lambda import naming
from stepsage_lambda.settings import declared

DEFAULT_TOP_K = 5  # what the endpoint returns for a raw image (inference_code/inference.py)
MAX_TOP_K = 100
# Serverless endpoints take at most 4 MB per request; a Function URL buffers 6 MB, base64 included.
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # the endpoint's own limit (inference.py DEFAULT_MAX_IMAGE_PIXELS)
RAW_CONTENT_TYPES = ("application/x-image", "application/octet-stream")
JSON_CONTENT_TYPE = "application/json"
# What a dataset may be called in a URL path: the path arrives percent-encoded, so anything wider would
# need decoding rules of its own. Names outside SageMaker's alphabet still map, by naming.endpoint_name.
DATASET_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# What the endpoint is told for each sniffed format; it decodes these and nothing else.
ENDPOINT_CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "application/x-image",
    "gif": "application/x-image",
    "bmp": "application/x-image",
}


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

    # The endpoint `POST /` reaches (the stack's served dataset); empty when the URL has no default.
    endpoint_name: str
    limits: Limits

    ENV_VARS: ClassVar[tuple[str, ...]] = ("ENDPOINT_NAME", "MAX_PAYLOAD_BYTES", "MAX_IMAGE_PIXELS")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InferenceSettings:
        env = declared(env, cls)
        return cls(endpoint_name=(env.get("ENDPOINT_NAME") or "").strip(), limits=Limits.from_env(env))


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


@dataclass(frozen=True)
class ClassifyRequest:
    image: bytes
    info: ImageInfo
    top_k: int | None = None  # None: the endpoint's default


# ---- image headers, read with the standard library only ----------------------------------------------


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {offset}")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            offset += 2
            continue
        if marker in (0xD9, 0xDA):
            raise ValueError("the JPEG has no frame header before its image data")
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + length
    raise ValueError("the JPEG ends before its frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        b0, b1, b2, b3 = data[21:25]
        return 1 + (b0 | (b1 & 0x3F) << 8), 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    raise ValueError(f"unknown WebP chunk {chunk!r}")


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height means top-down rows


def image_info(data: bytes) -> ImageInfo:
    """Format and size from the header alone: no pixel is decoded, so a bomb costs nothing here."""
    if not data:
        raise EmptyImage("the image is empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise UndecodableImage("the body is not a JPEG, PNG, WebP, GIF or BMP image")
    try:
        if fmt == "jpeg":
            width, height = _jpeg_size(data)
        elif fmt == "png":
            if data[12:16] != b"IHDR":
                raise ValueError("the PNG does not start with IHDR")
            width, height = struct.unpack(">II", data[16:24])
        elif fmt == "gif":
            width, height = struct.unpack("<HH", data[6:10])
        elif fmt == "webp":
            width, height = _webp_size(data)
        else:
            width, height = _bmp_size(data)
    except (ValueError, struct.error, IndexError) as e:
        raise UndecodableImage(f"the {fmt.upper()} header is unreadable: {e}") from e
    if width <= 0 or height <= 0:
        raise UndecodableImage(f"the {fmt.upper()} header claims {width}x{height} pixels")
    return ImageInfo(fmt, width, height)


# ---- which endpoint ----------------------------------------------------------------------------------


def dataset_endpoint_name(dataset: str) -> str:
    """`POST /<dataset>` -> the endpoint the deploy step gives that dataset (`stepsage-<dataset>`)."""
    if not DATASET_SEGMENT.match(dataset):
        raise InvalidDataset(
            f"{dataset[:120]!r} is not a dataset name: use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (datasets/<name>.zip serves from POST /<name>)"
        )
    return naming.endpoint_name(dataset)


def default_endpoint_name(configured: str) -> str:
    """`POST /` -> the endpoint named by ENDPOINT_NAME (the stack's served dataset)."""
    name = configured.strip()
    if not name:
        raise EndpointNotFound(
            "this URL has no default endpoint (ENDPOINT_NAME is not set): POST /<dataset> to reach the "
            "endpoint of datasets/<dataset>.zip"
        )
    return name


# ---- requests --------------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_top_k(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():  # from a query string
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidTopK(f"top_k must be an integer from 1 to {MAX_TOP_K}; got {value!r}")
    return value


def _base64_image(document: Any, limits: Limits) -> bytes:
    if not isinstance(document, dict) or "image" not in document:
        raise UndecodableImage('JSON requests look like {"image": "<base64>", "top_k": 5}')
    text = document["image"]
    if not isinstance(text, str):
        raise UndecodableImage('"image" must be a base64 string')
    if text.startswith("data:") and "," in text:  # a data URL, as browsers produce
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    if len(text) // 4 * 3 > limits.max_payload_bytes:  # refuse before decoding
        raise PayloadTooLarge(
            f"the image is about {len(text) // 4 * 3} bytes; the limit is {limits.max_payload_bytes}"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise UndecodableImage(f'"image" is not valid base64: {e}') from e


def parse_request(
    body: bytes, content_type: str | None, query: Mapping[str, str], limits: Limits
) -> ClassifyRequest:
    """Validate a Function URL request: raw image bytes (image/*) or JSON {"image": base64, "top_k": k}."""
    kind = media_type(content_type)
    top_k = parse_top_k(query["top_k"]) if query.get("top_k") else None
    if kind == JSON_CONTENT_TYPE:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UndecodableImage(f"the body is not valid JSON: {e}") from e
        image = _base64_image(document, limits)
        if document.get("top_k") is not None:
            top_k = parse_top_k(document["top_k"])
    elif kind.startswith("image/") or kind in RAW_CONTENT_TYPES:
        image = body
    else:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not supported: send the image's bytes with Content-Type "
            'image/jpeg (or image/png ...), or JSON {"image": "<base64>"} as application/json'
        )
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
        return request.image, ENDPOINT_CONTENT_TYPES[request.info.format]
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
