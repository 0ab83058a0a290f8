"""Request limits and grammar that the inference Lambda, the serving container and staging agree on."""

from __future__ import annotations

import base64
import binascii
import json

# Predictions a request gets when it names no top_k, and the most it may ask for.
DEFAULT_TOP_K = 5
MAX_TOP_K = 100

# 40 MP covers any phone or DSLR photo; beyond it a small file is almost surely a decompression bomb.
# Serving refuses more; staging may be stricter (its decode runs many at once) but never looser, or a
# model would train on images its endpoint refuses.
MAX_IMAGE_PIXELS = 40_000_000

# Serverless endpoints take at most 4 MB per invocation, so the Lambda never sends more.
MAX_ENDPOINT_PAYLOAD_BYTES = 4 * 1024 * 1024
# What the serving container reads in one request: real-time endpoints take 6 MB, and a JSON body's
# base64 costs 4/3 of the image.
MAX_SERVING_BODY_BYTES = 8 * 1024 * 1024

# ---- the request grammar both the inference Lambda and inference.py read -------------------------------
# One parser for both, so a body the Lambda accepts is one the container accepts, and a hostile body (a
# number of 5,000 digits, nesting 10,000 deep, a duplicate key, bytes that are not UTF-8) is a
# RequestError the caller answers with a 4xx, never an exception nobody expected.

# The fields of a JSON request. Any other field is refused by name: a typo like "topk" must not silently
# get the default.
REQUEST_FIELDS = ("image", "top_k")
# The longest integer a request may spell (sign excluded): far above MAX_TOP_K, far below Python's
# int-from-string limit (4,300 digits), which raises ValueError.
MAX_INTEGER_DIGITS = 20
# How much of a refused value a message quotes.
_QUOTE_CHARS = 60
_UTF8_BOM = b"\xef\xbb\xbf"
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


class RequestError(ValueError):
    """A request that breaks the grammar above; the message tells the caller what to send instead."""


class InvalidTopK(RequestError):
    pass


class InvalidBase64(RequestError):
    pass


class ImageTooLarge(RequestError):
    pass


def quote(value: object) -> str:
    """A refused value, for a message: repr, cut short, so a 4 MB string never comes back in an answer."""
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."


def _refuse_constant(name: str) -> object:
    raise RequestError(f"{name} is not JSON: numbers must be finite")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise RequestError(f"a number with {len(text.lstrip('-'))} digits is not a request value")
    return int(text)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document: dict[str, object] = {}
    for key, value in pairs:
        if key in document:
            raise RequestError(f"the key {quote(key)} appears twice; give each field once")
        document[key] = value
    return document


def request_document(body: bytes) -> dict[str, object]:
    """The JSON body of a request: UTF-8 (a leading BOM is tolerated, as RFC 8259 allows), one object with
    only REQUEST_FIELDS, each once, with `image` present. NaN, Infinity and giant integers are refused."""
    if body.startswith(_UTF8_BOM):
        body = body[len(_UTF8_BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(
            f"the body is not UTF-8 JSON: byte {e.start} is {body[e.start : e.start + 1]!r}"
        ) from e
    try:
        document = json.loads(
            text,
            parse_int=_bounded_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as e:
        raise RequestError(f"the body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise RequestError("the body nests too deeply: send one flat JSON object") from e
    if not isinstance(document, dict) or "image" not in document:
        raise RequestError('JSON requests look like {"image": "<base64>", "top_k": 5}')
    unknown = [key for key in document if key not in REQUEST_FIELDS]
    if unknown:
        names = ", ".join(quote(key) for key in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise RequestError(f"unknown field(s) {names}: a JSON request has only {', '.join(REQUEST_FIELDS)}")
    return document


def top_k_from_json(value: object) -> int:
    """A JSON top_k: an integer token from 1 to MAX_TOP_K. 5.0, 1e2, "5" and true are refused, not coerced."""
    # bool is an int subclass: true must not mean top_k=1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidTopK(f"top_k must be a JSON integer from 1 to {MAX_TOP_K}; got {quote(value)}")
    return value


def top_k_from_query(text: str) -> int:
    """A query-string top_k: ASCII digits only (no sign, space, underscore, point or other script)."""
    if "," in text:  # how a Function URL joins a repeated key
        raise InvalidTopK(f"top_k appears more than once in the query string ({quote(text)}); give it once")
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_INTEGER_DIGITS) or not (
        1 <= int(text) <= MAX_TOP_K
    ):
        raise InvalidTopK(f"top_k must be an integer from 1 to {MAX_TOP_K} in digits 0-9; got {quote(text)}")
    return int(text)


def image_from_base64(value: object, max_bytes: int) -> bytes:
    """The image of a JSON request: base64 in the standard or URL-safe alphabet, padded or not, whitespace
    ignored, optionally as a `data:<any type>;base64,` URL (the bytes decide the format, not the URL's type).
    Refused before decoding when it would exceed `max_bytes`."""
    if not isinstance(value, str):
        raise InvalidBase64(f'"image" must be a base64 string; got {type(value).__name__}')
    text = value
    if text[:5].lower() == "data:":
        header, comma, text = text.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise InvalidBase64('a data URL in "image" must be base64: data:<type>;base64,<data>')
    text = "".join(text.split())
    if len(text) // 4 * 3 > max_bytes:
        raise ImageTooLarge(f"the image is about {len(text) // 4 * 3} bytes; the limit is {max_bytes}")
    if not text.isascii():
        raise InvalidBase64('"image" is not valid base64: it holds characters outside ASCII')
    if ("-" in text or "_" in text) and ("+" in text or "/" in text):
        raise InvalidBase64('"image" mixes the standard (+/) and URL-safe (-_) base64 alphabets')
    unpadded = text.translate(_URLSAFE_TO_STANDARD).rstrip("=")
    if len(unpadded) % 4 == 1:
        raise InvalidBase64(f'"image" is not valid base64: {len(unpadded)} characters cannot be whole bytes')
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidBase64(f'"image" is not valid base64: {e}') from e
