"""The inference Lambda's pure request logic (lambdas/inference/image_request.py), on literal inputs."""

from __future__ import annotations

import ast
import base64
import io
import json
import struct
import sys
import zlib

import pytest
from events_fixture import LAMBDAS_DIR, load_lambda_module
from PIL import Image

pytestmark = pytest.mark.unit

image_request = load_lambda_module("inference", "image_request")
LIMITS = image_request.Limits(max_payload_bytes=10_000, max_image_pixels=1_000_000)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


# A minimal JPEG head: SOI, an APP0 segment to skip, a fill byte, then SOF0 with height 480 and width 640.
JPEG_640x480 = (
    b"\xff\xd8"
    + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\xff\xff\xc0\x00\x11\x08\x01\xe0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
)
GIF_300x200 = b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00\x00\x00"
BMP_CORE_50x40 = b"BM" + b"\x00" * 12 + struct.pack("<I", 12) + struct.pack("<HH", 50, 40)
BMP_TOP_DOWN_70x60 = b"BM" + b"\x00" * 12 + struct.pack("<I", 40) + struct.pack("<ii", 70, -60)
WEBP_VP8X_1000x750 = (
    b"RIFF\x00\x00\x00\x00WEBPVP8X"
    + b"\x0a\x00\x00\x00"
    + b"\x10\x00\x00\x00"
    + ((999).to_bytes(3, "little") + (749).to_bytes(3, "little"))
)


def _pillow(fmt: str, size: tuple[int, int], **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA" if fmt == "WEBP" and options.get("alpha") else "RGB", size, (90, 40, 200)).save(
        buffer, format=fmt, **{k: v for k, v in options.items() if k != "alpha"}
    )
    return buffer.getvalue()


# ---- image headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (JPEG_640x480, ("jpeg", 640, 480)),
        (_png_header(123, 45), ("png", 123, 45)),
        (GIF_300x200, ("gif", 300, 200)),
        (BMP_CORE_50x40, ("bmp", 50, 40)),
        (BMP_TOP_DOWN_70x60, ("bmp", 70, 60)),
        (WEBP_VP8X_1000x750, ("webp", 1000, 750)),
    ],
)
def test_image_info_reads_literal_headers(data: bytes, expected: tuple[str, int, int]) -> None:
    info = image_request.image_info(data)
    assert (info.format, info.width, info.height) == expected


@pytest.mark.parametrize(
    ("fmt", "size", "options"),
    [
        ("JPEG", (33, 17), {}),
        ("JPEG", (64, 48), {"progressive": True}),
        ("JPEG", (20, 30), {"exif": b"Exif\x00\x00" + b"\x00" * 64}),
        ("PNG", (31, 7), {}),
        ("GIF", (12, 40), {}),
        ("BMP", (9, 5), {}),
        ("WEBP", (45, 27), {"lossless": True}),  # VP8L
        ("WEBP", (46, 28), {"quality": 80}),  # VP8
        ("WEBP", (47, 29), {"alpha": True, "quality": 80}),  # VP8X with an alpha chunk
    ],
)
def test_image_info_agrees_with_pillow(fmt: str, size: tuple[int, int], options: dict) -> None:
    data = _pillow(fmt, size, **options)
    info = image_request.image_info(data)
    assert (info.format, info.width, info.height) == (fmt.lower(), *size)


@pytest.mark.parametrize(
    "data",
    [
        b"hello world, not an image",
        b"\xff\xd8\xff\xda\x00\x08",  # image data before any frame header
        b"\xff\xd8\xff\xe0\x00\x10JFIF",  # ends inside the first segment
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIEND",  # no IHDR first
        _png_header(0, 10),
        b"RIFF\x00\x00\x00\x00WEBPVP9 \x00\x00",
        b"GIF89a\x01",
    ],
)
def test_unreadable_headers_are_undecodable(data: bytes) -> None:
    with pytest.raises(image_request.UndecodableImage) as caught:
        image_request.image_info(data)
    assert caught.value.status_code == 400


def test_empty_image_is_its_own_error() -> None:
    with pytest.raises(image_request.EmptyImage):
        image_request.image_info(b"")


# ---- parse_request ---------------------------------------------------------------------------------


def test_raw_image_request_keeps_bytes_and_reads_top_k_from_the_query() -> None:
    data = _png_header(100, 100)
    request = image_request.parse_request(data, "image/png", {"top_k": "3"}, LIMITS)
    assert request.image == data
    assert (request.info.format, request.top_k) == ("png", 3)


@pytest.mark.parametrize(
    "content_type",
    ["image/jpeg", "image/png", "IMAGE/WEBP", "application/x-image", "application/octet-stream"],
)
def test_raw_content_types_are_sniffed_not_trusted(content_type: str) -> None:
    request = image_request.parse_request(JPEG_640x480, content_type, {}, LIMITS)
    assert request.info.format == "jpeg"
    assert request.top_k is None


def test_json_request_with_top_k_and_data_url() -> None:
    encoded = base64.b64encode(GIF_300x200).decode()
    body = json.dumps({"image": "data:image/gif;base64," + encoded, "top_k": 7}).encode()
    request = image_request.parse_request(body, "application/json; charset=utf-8", {"top_k": "7"}, LIMITS)
    assert request.image == GIF_300x200
    assert request.top_k == 7  # the same top_k in the query string and the body is no contradiction
    with pytest.raises(image_request.InvalidTopK, match="2 in the query string and 7 in the body"):
        image_request.parse_request(body, "application/json", {"top_k": "2"}, LIMITS)


@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(image_request.UnsupportedMediaType) as caught:
        image_request.parse_request(JPEG_640x480, content_type, {}, LIMITS)
    assert caught.value.status_code == 415
    assert "Content-Type" in caught.value.message


def test_oversize_raw_image_is_413() -> None:
    data = JPEG_640x480 + b"\x00" * LIMITS.max_payload_bytes
    with pytest.raises(image_request.PayloadTooLarge) as caught:
        image_request.parse_request(data, "image/jpeg", {}, LIMITS)
    assert caught.value.status_code == 413


def test_oversize_base64_is_refused_before_decoding() -> None:
    # Invalid base64 that is too long: a 413, not a 400, proves the size was checked first.
    body = json.dumps({"image": "!" * (LIMITS.max_payload_bytes * 2)}).encode()
    with pytest.raises(image_request.PayloadTooLarge):
        image_request.parse_request(body, "application/json", {}, LIMITS)


def test_too_many_pixels_is_400_from_the_header_alone() -> None:
    with pytest.raises(image_request.TooManyPixels) as caught:
        image_request.parse_request(_png_header(1001, 1000), "image/png", {}, LIMITS)
    assert caught.value.status_code == 400
    assert "1001x1000" in caught.value.message
    assert image_request.parse_request(_png_header(1000, 1000), "image/png", {}, LIMITS).info.width == 1000


@pytest.mark.parametrize(
    "body",
    [
        b"{broken",
        b"[1, 2]",
        b'{"img": "abc"}',
        b'{"image": 5}',
        b'{"image": "abc$"}',
        json.dumps({"image": base64.b64encode(b"text, not an image").decode()}).encode(),
    ],
)
def test_bad_json_requests_are_400(body: bytes) -> None:
    with pytest.raises(image_request.UndecodableImage) as caught:
        image_request.parse_request(body, "application/json", {}, LIMITS)
    assert caught.value.status_code == 400


@pytest.mark.parametrize("top_k", [0, 101, -3, "two", 1.5, True])
def test_bad_top_k_in_json_is_400(top_k: object) -> None:
    body = json.dumps({"image": base64.b64encode(JPEG_640x480).decode(), "top_k": top_k}).encode()
    with pytest.raises(image_request.InvalidTopK):
        image_request.parse_request(body, "application/json", {}, LIMITS)


@pytest.mark.parametrize("top_k", ["0", "abc", "1000", "-1"])
def test_bad_top_k_in_query_is_400(top_k: str) -> None:
    with pytest.raises(image_request.InvalidTopK):
        image_request.parse_request(JPEG_640x480, "image/jpeg", {"top_k": top_k}, LIMITS)


def test_limits_from_env() -> None:
    assert image_request.Limits.from_env({}) == image_request.Limits(4 * 1024 * 1024, 40_000_000)
    limits = image_request.Limits.from_env({"MAX_PAYLOAD_BYTES": "1000", "MAX_IMAGE_PIXELS": "50"})
    assert (limits.max_payload_bytes, limits.max_image_pixels) == (1000, 50)
    with pytest.raises(ValueError, match="MAX_PAYLOAD_BYTES"):
        image_request.Limits.from_env({"MAX_PAYLOAD_BYTES": "4MB"})


# ---- what goes to the endpoint and what comes back ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "top_k", "content_type"),
    [
        (JPEG_640x480, None, "image/jpeg"),
        (_png_header(10, 10), 5, "image/png"),
        (GIF_300x200, 1, "application/x-image"),
        (WEBP_VP8X_1000x750, None, "application/x-image"),
    ],
)
def test_endpoint_payload_is_raw_when_the_default_top_k_covers_it(
    data: bytes, top_k: int | None, content_type: str
) -> None:
    request = image_request.ClassifyRequest(data, image_request.image_info(data), top_k)
    assert image_request.endpoint_payload(request, LIMITS) == (data, content_type)


def test_endpoint_payload_is_json_for_a_larger_top_k() -> None:
    request = image_request.ClassifyRequest(JPEG_640x480, image_request.image_info(JPEG_640x480), 8)
    payload, content_type = image_request.endpoint_payload(request, LIMITS)
    assert content_type == "application/json"
    assert json.loads(payload) == {"image": base64.b64encode(JPEG_640x480).decode(), "top_k": 8}


def test_endpoint_payload_refuses_base64_over_the_limit() -> None:
    data = JPEG_640x480 + b"\x00" * 8_000  # fits raw (10 000), not as base64
    request = image_request.ClassifyRequest(data, image_request.image_info(data), 10)
    with pytest.raises(image_request.PayloadTooLarge, match="top_k <= 5"):
        image_request.endpoint_payload(request, LIMITS)


ANSWER = {
    "predictions": [{"label": "a", "score": 0.7}, {"label": "b", "score": 0.2}, {"label": "c", "score": 0.1}],
    "model": {"architecture": "resnet18"},
}


def test_shape_response_cuts_to_top_k_and_keeps_model_info() -> None:
    shaped = image_request.shape_response(ANSWER, 2)
    assert [p["label"] for p in shaped["predictions"]] == ["a", "b"]
    assert shaped["model"] == {"architecture": "resnet18"}
    assert image_request.shape_response(ANSWER, None)["predictions"] == ANSWER["predictions"]
    assert image_request.top1_confidence(shaped) == 0.7
    assert image_request.top1_confidence({"predictions": []}) is None


@pytest.mark.parametrize("document", [[], {"labels": []}, {"predictions": "a"}, None])
def test_shape_response_without_predictions_is_a_bad_gateway(document: object) -> None:
    with pytest.raises(image_request.EndpointFailed) as caught:
        image_request.shape_response(document, None)
    assert caught.value.status_code == 502


@pytest.mark.parametrize(
    ("status", "message", "expected_type", "expected_status", "expected_message"),
    [
        (400, '{"message": "cannot decode the image"}', "EndpointRejected", 400, "cannot decode the image"),
        (415, '{"message": "content type nope"}', "EndpointRejected", 415, "content type nope"),
        (413, "plain text body", "EndpointRejected", 413, "plain text body"),
        (500, '{"message": "model error: RuntimeError"}', "EndpointFailed", 502, "model error: RuntimeError"),
        (None, None, "EndpointFailed", 502, "the model failed (None)"),
    ],
)
def test_endpoint_error_passes_4xx_through_and_turns_the_rest_into_502(
    status: int | None, message: str | None, expected_type: str, expected_status: int, expected_message: str
) -> None:
    error = image_request.endpoint_error(status, message)
    assert type(error).__name__ == expected_type
    assert error.status_code == expected_status
    assert expected_message in error.message


def test_the_lambda_imports_only_what_it_ships() -> None:
    """Every import resolves to the standard library, the function's own modules, the shared layer or a
    pinned requirement: Pillow, torch and stepsage would fail on Lambda."""
    function_dir = LAMBDAS_DIR / "inference"
    requirements = (function_dir / "requirements.txt").read_text().splitlines()
    pinned = {
        line.split("[")[0].split("==")[0].strip().replace("-", "_") for line in requirements if "==" in line
    }
    assert all("==" in line for line in requirements if line.strip() and not line.startswith("#"))
    provided = {"aws_lambda_powertools", "boto3", "botocore", "aws_xray_sdk"} & pinned
    own = {path.stem for path in function_dir.glob("*.py")} | {"stepsage_lambda", "contracts"}
    imported: set[str] = set()
    for path in function_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    unexpected = imported - set(sys.stdlib_module_names) - own - provided
    assert unexpected == set()
    assert {"aws_lambda_powertools", "botocore"} <= imported
