"""SageMaker PyTorch serving handlers for a stepsage model: model_fn, input_fn, predict_fn, output_fn."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

import architectures
import presets
from contracts import artifact, images, limits

try:
    # Inside the serving container the toolkit turns only its own error type into the HTTP status it carries;
    # subclassing it there makes our 4xx reach the client instead of a generic 500.
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:
    _ToolkitError = Exception

logger = logging.getLogger(__name__)
# Pillow registers its plugins lazily; Image.open(formats=...) only sees registered ones (WEBP).
Image.init()

# Every format staging accepts, under its own media type or a generic one (contracts.images).
IMAGE_CONTENT_TYPES = images.MEDIA_TYPES
JSON_CONTENT_TYPE = "application/json"
CONTENT_TYPES = (*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE)
ACCEPT_TYPES = (JSON_CONTENT_TYPE, "*/*", "application/*")
IMAGE_FORMATS = tuple(fmt.name for fmt in images.FORMATS)
DEFAULT_TOP_K = limits.DEFAULT_TOP_K
MAX_TOP_K = limits.MAX_TOP_K
DEFAULT_MAX_IMAGE_PIXELS = limits.MAX_IMAGE_PIXELS
DEFAULT_MAX_BODY_BYTES = limits.MAX_SERVING_BODY_BYTES
# bf16 may change a probability by about 1e-2; a larger gap means the model is not safe to run in bf16.
BF16_AGREEMENT_TOLERANCE = 0.03


class InferenceError(_ToolkitError):
    """A request the model cannot serve; `status_code` is the HTTP status an HTTP layer should answer."""

    status_code = 400
    phrase = "Bad Request"

    def __init__(self, message: str) -> None:
        # Set the toolkit's fields directly so the same class works with or without the toolkit present.
        Exception.__init__(self, message)
        self.message = message


class UnsupportedContentTypeError(InferenceError):
    status_code = 415
    phrase = "Unsupported Media Type"


class UnsupportedAcceptError(InferenceError):
    status_code = 406
    phrase = "Not Acceptable"


class EmptyBodyError(InferenceError):
    pass


class PayloadTooLargeError(InferenceError):
    status_code = 413
    phrase = "Payload Too Large"


class UndecodableInputError(InferenceError):
    """Bytes that are not an image we decode, malformed JSON, or invalid base64."""


class TooManyPixelsError(InferenceError):
    # 400, not 413: the body is small (that is what makes a bomb); it is the image inside that is refused.
    pass


class InvalidTopKError(InferenceError):
    pass


@dataclass
class ImageRequest:
    image: Image.Image
    top_k: int = DEFAULT_TOP_K


@dataclass
class LoadedModel:
    network: torch.nn.Module
    labels: list[str]
    config: dict[str, Any]
    transform: Any
    device: torch.device
    mode: str = "fp32"
    serving: dict[str, Any] = field(default_factory=dict)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def max_image_pixels() -> int:
    return _env_int("STEPSAGE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def max_body_bytes() -> int:
    return _env_int("STEPSAGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)


def serving_threads() -> int | None:
    """Threads for torch: the host shares its cores between training, serving and Lambdas."""
    for name in ("STEPSAGE_TORCH_THREADS", "OMP_NUM_THREADS", "SM_NUM_CPUS"):
        raw = os.environ.get(name, "").strip()
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    return None


def cpu_has_native_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """bf16 is slower than fp32 without hardware support (e.g. ml.m5), so look for the instruction flags."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags = set(value.split())
            # x86: AVX512-BF16 or AMX; Arm (Graviton 3+): the bf16 feature.
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def outputs_agree(reference: torch.Tensor, candidate: torch.Tensor, tolerance: float) -> bool:
    """Two batches of logits agree when their probabilities stay within `tolerance` and top-1 never flips
    on an input where fp32 is decisive (a near tie may flip under any rounding and proves nothing)."""
    ref = torch.softmax(reference.float(), dim=1)
    cand = torch.softmax(candidate.float(), dim=1)
    if not torch.isfinite(cand).all():
        return False
    if (ref - cand).abs().max().item() > tolerance:
        return False
    top2 = ref.topk(min(2, ref.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1] if ref.shape[1] > 1 else torch.ones(ref.shape[0])
    decisive = margin > tolerance
    return bool((ref.argmax(1) == cand.argmax(1))[decisive].all())


def _autocast(model: LoadedModel) -> Any:
    if model.mode == "bf16":
        return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)
    if model.mode == "fp16":
        return torch.autocast(device_type=model.device.type, dtype=torch.float16)
    return nullcontext()


def _forward(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    batch = batch.to(model.device)
    if model.mode != "fp32":
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(model):
        return model.network(batch).float()


def _probe_batch(image_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, image_size, image_size, generator=generator)


def _choose_mode(model: LoadedModel) -> tuple[str, str]:
    """Pick the fastest mode that agrees with fp32 on a probe batch; returns (mode, reason)."""
    requested = os.environ.get("STEPSAGE_PRECISION", "auto").strip().lower() or "auto"
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"STEPSAGE_PRECISION must be auto, fp32, bf16 or fp16; got {requested!r}")
    if requested == "fp32":
        return "fp32", "requested"
    if requested == "auto":
        if model.device.type == "cuda":
            candidate = "fp16"
        elif cpu_has_native_bf16():
            candidate = "bf16"
        else:
            return "fp32", "cpu has no native bf16"
    else:
        candidate = requested
    probe = _probe_batch(int(model.config["image_size"]))
    reference = _forward(model, probe)
    fp32_network = model.network
    model.network = model.network.to(memory_format=torch.channels_last)
    model.mode = candidate
    try:
        trial = _forward(model, probe)
    except RuntimeError as e:
        logger.warning("%s inference failed on the probe batch, serving fp32: %s", candidate, e)
        trial = None
    tolerance = float(os.environ.get("STEPSAGE_AGREEMENT_TOLERANCE", BF16_AGREEMENT_TOLERANCE))
    if trial is not None and outputs_agree(reference, trial, tolerance):
        return candidate, f"agrees with fp32 within {tolerance} on a probe batch"
    model.network = fp32_network.to(memory_format=torch.contiguous_format)
    model.mode = "fp32"
    return "fp32", f"{candidate} disagreed with fp32 on a probe batch"


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def model_fn(model_dir: str) -> LoadedModel:
    """Load the artifact written by training: model.pth (state_dict), model_config.json and labels.json."""
    started = time.perf_counter()
    threads = serving_threads()
    if threads:
        torch.set_num_threads(threads)
    config = _read_json(os.path.join(model_dir, artifact.CONFIG))
    labels = [str(label) for label in _read_json(os.path.join(model_dir, artifact.LABELS))]
    num_classes = int(config["num_classes"])
    if len(labels) != num_classes:
        raise ValueError(f"labels.json has {len(labels)} labels; model_config.json has {num_classes}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = architectures.build_model(config["architecture"], num_classes, "none")
    architectures.load_state(network, os.path.join(model_dir, artifact.WEIGHTS), device=str(device))
    network = network.to(device).eval()
    transform = presets.eval_transform(
        int(config["image_size"]),
        mean=config.get("mean", presets.IMAGENET_MEAN),
        std=config.get("std", presets.IMAGENET_STD),
    )
    model = LoadedModel(network=network, labels=labels, config=config, transform=transform, device=device)
    mode, reason = _choose_mode(model)
    model.serving = {
        "device": device.type,
        "mode": mode if mode == "fp32" else f"{mode}-autocast+channels_last",
        "mode_reason": reason,
        "threads": torch.get_num_threads(),
        "load_seconds": round(time.perf_counter() - started, 3),
    }
    logger.info("model loaded: %s", model.serving)
    return model


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _as_bytes(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes JSON refuses
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise UndecodableInputError(f"request body of type {type(body).__name__} is not bytes")


def decode_image(data: bytes, pixel_limit: int | None = None) -> Image.Image:
    """The shared decode (contracts.images.decode): RGB, refused from its header when oversized."""
    if not data:
        raise EmptyBodyError("the image is empty")
    limit = max_image_pixels() if pixel_limit is None else pixel_limit
    try:
        return images.decode(data, max_pixels=limit)
    except images.TooManyPixels as e:
        raise TooManyPixelsError(str(e)) from e
    except images.EmptyImage as e:
        raise EmptyBodyError(str(e)) from e
    except images.ImageError as e:
        raise UndecodableInputError(
            f"cannot decode the image; send one of {', '.join(IMAGE_FORMATS)}: {e}"
        ) from e


def parse_top_k(value: Any) -> int:
    """A JSON integer from 1 to MAX_TOP_K (contracts.limits): 5.0, "5" and true are refused, not coerced."""
    try:
        return limits.top_k_from_json(value)
    except limits.RequestError as e:
        raise InvalidTopKError(str(e)) from e


def _json_request(body: bytes) -> ImageRequest:
    """The JSON grammar the inference Lambda also reads (contracts.limits): unknown fields, duplicate keys,
    NaN, giant numbers, deep nesting and bytes that are not UTF-8 are each a 400 naming the problem."""
    try:
        document = limits.request_document(body)
        data = limits.image_from_base64(document["image"], max_body_bytes())
    except limits.ImageTooLarge as e:
        raise PayloadTooLargeError(str(e)) from e
    except limits.RequestError as e:
        raise UndecodableInputError(str(e)) from e
    top_k = document.get("top_k")
    return ImageRequest(decode_image(data), top_k=DEFAULT_TOP_K if top_k is None else parse_top_k(top_k))


def input_fn(request_body: Any, request_content_type: str | None) -> ImageRequest:
    """Turn a request body into a decoded image and top_k; raises InferenceError subclasses."""
    media_type = _media_type(request_content_type)
    if media_type not in CONTENT_TYPES:
        raise UnsupportedContentTypeError(
            f"content type {limits.quote(request_content_type)} is not supported; "
            f"use one of {', '.join(CONTENT_TYPES)}"
        )
    body = _as_bytes(request_body)
    if not body:
        raise EmptyBodyError("the request body is empty")
    if len(body) > max_body_bytes():
        raise PayloadTooLargeError(f"the request body is {len(body)} bytes; the limit is {max_body_bytes()}")
    if media_type in IMAGE_CONTENT_TYPES:
        return ImageRequest(decode_image(body))
    return _json_request(body)


def predict_fn(input_data: ImageRequest, model: LoadedModel) -> dict[str, Any]:
    batch = model.transform(input_data.image).unsqueeze(0)
    probabilities = torch.softmax(_forward(model, batch), dim=1)[0]
    k = min(input_data.top_k, len(model.labels))
    scores, indices = probabilities.topk(k)
    return {
        "predictions": [
            {"label": model.labels[index], "score": round(float(score), 6)}
            for score, index in zip(scores.tolist(), indices.tolist(), strict=True)
        ],
        "model": {**model.config, "serving": model.serving},
    }


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 1.0  # a garbled weight is no reason to refuse
    return 1.0


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header lets us answer JSON: any listed range that is JSON, */* or application/*,
    with a quality above 0. No header, or one that lists nothing, accepts anything."""
    ranges = [part for part in (accept or "").split(",") if part.strip()]
    if not ranges:
        return True
    for media_range in ranges:
        kind, *params = (piece.strip().lower() for piece in media_range.split(";"))
        if kind in ACCEPT_TYPES and _quality(params) > 0:
            return True
    return False


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    if not accepts_json(accept):
        raise UnsupportedAcceptError(
            f"accept {limits.quote(accept)} is not supported; use {JSON_CONTENT_TYPE}"
        )
    return json.dumps(prediction)


if __name__ == "__main__":  # python inference.py MODEL_DIR IMAGE: a quick check inside a container
    loaded = model_fn(sys.argv[1])
    with open(sys.argv[2], "rb") as image_file:
        print(output_fn(predict_fn(input_fn(image_file.read(), "application/x-image"), loaded), None))
