"""inference_code/inference.py: request parsing, typed errors, precision choice and predictions."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from events_fixture import load_file_module

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]


# inference.py imports presets/architectures by plain name, as it does beside them in code/.
sys.path.insert(0, str(REPO_ROOT / "training_code"))
inference = load_file_module("stepsage_serving_inference", REPO_ROOT / "inference_code" / "inference.py")
model_artifact = load_file_module(
    "stepsage_model_artifact", REPO_ROOT / "tests" / "integration" / "model_artifact.py"
)
image_bytes = model_artifact.image_bytes
png_bomb = model_artifact.png_bomb


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("STEPSAGE_TORCH_THREADS", "1")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_artifact.build_model_artifact(tmp_path_factory.mktemp("artifact"))


def _json_body(document: dict) -> bytes:
    return json.dumps(document).encode()


# ---- input_fn: accepted requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("image/jpeg", "JPEG"),
        ("image/png", "PNG"),
        ("application/x-image", "WEBP"),
        ("application/x-image", "GIF"),
        ("application/x-image", "BMP"),
        ("IMAGE/JPEG; charset=binary", "JPEG"),
        # Every format staging accepts is served, under its own media type too (contracts.images).
        ("image/tiff", "TIFF"),
        ("image/webp", "WEBP"),
        ("image/bmp", "BMP"),
        ("image/gif", "GIF"),
        ("image/x-portable-anymap", "PPM"),
        ("application/x-image", "TIFF"),
    ],
)
def test_input_fn_decodes_images_to_rgb(content_type: str, fmt: str) -> None:
    request = inference.input_fn(image_bytes(fmt, size=(40, 30)), content_type)
    assert request.image.mode == "RGB"
    assert request.image.size == (40, 30)
    assert request.top_k == inference.DEFAULT_TOP_K


def test_input_fn_json_base64_with_top_k_and_data_url() -> None:
    encoded = base64.b64encode(image_bytes("PNG")).decode()
    request = inference.input_fn(_json_body({"image": encoded, "top_k": 2}), "application/json")
    assert request.top_k == 2
    assert request.image.size == (40, 30)
    from_data_url = inference.input_fn(
        json.dumps({"image": "data:image/png;base64," + encoded}), "application/json"
    )
    assert from_data_url.top_k == inference.DEFAULT_TOP_K
    assert from_data_url.image.tobytes() == request.image.tobytes()


def test_input_fn_json_null_top_k_means_default() -> None:
    body = _json_body({"image": base64.b64encode(image_bytes()).decode(), "top_k": None})
    assert inference.input_fn(body, "application/json").top_k == inference.DEFAULT_TOP_K


# ---- input_fn: typed errors ------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "image/svg+xml", "", None, "multipart/form-data"])
def test_unsupported_content_type_is_415(content_type: str | None) -> None:
    with pytest.raises(inference.UnsupportedContentTypeError) as caught:
        inference.input_fn(image_bytes(), content_type)
    assert caught.value.status_code == 415
    assert "image/jpeg" in str(caught.value)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/json"])
def test_empty_body_is_400(content_type: str) -> None:
    with pytest.raises(inference.EmptyBodyError) as caught:
        inference.input_fn(b"", content_type)
    assert caught.value.status_code == 400


def test_empty_base64_image_is_empty_body() -> None:
    with pytest.raises(inference.EmptyBodyError):
        inference.input_fn(_json_body({"image": ""}), "application/json")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"definitely not an image", "image/jpeg"),
        (image_bytes("JPEG")[:200], "image/jpeg"),  # truncated: header fine, pixels missing
        (b"\x00" * 64, "application/x-image"),
        (image_bytes("ICO"), "application/x-image"),  # a real image in a format we do not decode
        (b"{not json", "application/json"),
        (b'["image"]', "application/json"),
        (b'{"picture": "abc"}', "application/json"),
        (b'{"image": "***not base64***"}', "application/json"),
        (b'{"image": 42}', "application/json"),
        (_json_body({"image": base64.b64encode(b"plain text").decode()}), "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
    ],
)
def test_undecodable_input_is_400(body: bytes, content_type: str) -> None:
    with pytest.raises(inference.UndecodableInputError) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == 400


def test_decode_errors_keep_their_cause() -> None:
    with pytest.raises(inference.UndecodableInputError) as caught:
        inference.input_fn(b"definitely not an image", "image/png")
    assert caught.value.__cause__ is not None


def test_bomb_over_our_limit_is_refused_from_the_header() -> None:
    # 48 MP claimed, a few rows of pixels present: decoding would fail as truncated (UndecodableInputError),
    # so TooManyPixelsError proves the size was checked before any decompression.
    with pytest.raises(inference.TooManyPixelsError) as caught:
        inference.input_fn(png_bomb(8000, 6000), "image/png")
    assert caught.value.status_code == 400
    assert "8000x6000" in str(caught.value)


def test_giant_bomb_caught_by_pillow_is_still_too_many_pixels() -> None:
    with pytest.raises(inference.TooManyPixelsError) as caught:
        inference.input_fn(png_bomb(100_000, 100_000), "image/png")
    assert caught.value.__cause__ is not None


def test_pixel_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(inference.TooManyPixelsError):
        inference.input_fn(image_bytes(size=(40, 30)), "image/jpeg")
    assert inference.input_fn(image_bytes(size=(20, 20)), "image/jpeg").image.size == (20, 20)


def test_body_over_the_limit_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_MAX_BODY_BYTES", "100")
    with pytest.raises(inference.PayloadTooLargeError) as caught:
        inference.input_fn(image_bytes(), "image/jpeg")
    assert caught.value.status_code == 413


@pytest.mark.parametrize("top_k", [0, -1, 101, "3", 2.5, True, [1]])
def test_bad_top_k_is_400(top_k: object) -> None:
    body = _json_body({"image": base64.b64encode(image_bytes()).decode(), "top_k": top_k})
    with pytest.raises(inference.InvalidTopKError) as caught:
        inference.input_fn(body, "application/json")
    assert caught.value.status_code == 400


def test_every_typed_error_is_an_inference_error_with_a_client_status() -> None:
    classes = [
        inference.UnsupportedContentTypeError,
        inference.UnsupportedAcceptError,
        inference.EmptyBodyError,
        inference.PayloadTooLargeError,
        inference.UndecodableInputError,
        inference.TooManyPixelsError,
        inference.InvalidTopKError,
    ]
    statuses = {cls.__name__: cls("x").status_code for cls in classes}
    assert all(issubclass(cls, inference.InferenceError) for cls in classes)
    assert statuses == {
        "UnsupportedContentTypeError": 415,
        "UnsupportedAcceptError": 406,
        "EmptyBodyError": 400,
        "PayloadTooLargeError": 413,
        "UndecodableInputError": 400,
        "TooManyPixelsError": 400,
        "InvalidTopKError": 400,
    }
    assert inference.EmptyBodyError("why").message == "why"


# ---- output_fn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "", "application/json", "*/*", "application/json; charset=utf-8"])
def test_output_fn_serializes_json(accept: str | None) -> None:
    prediction = {"predictions": [{"label": "a", "score": 0.5}], "model": {}}
    assert json.loads(inference.output_fn(prediction, accept)) == prediction


def test_output_fn_refuses_other_accept_types() -> None:
    with pytest.raises(inference.UnsupportedAcceptError) as caught:
        inference.output_fn({"predictions": []}, "text/csv")
    assert caught.value.status_code == 406


# ---- precision choice ------------------------------------------------------------------------------


def test_outputs_agree_accepts_identical_and_small_differences() -> None:
    logits = torch.tensor([[4.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    assert inference.outputs_agree(logits, logits, 0.03)
    assert inference.outputs_agree(logits, logits + 0.01, 0.03)


def test_outputs_agree_rejects_a_decisive_flip_and_large_gaps() -> None:
    reference = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    flipped = torch.tensor([[0.0, 4.0], [0.0, 4.0]])
    assert not inference.outputs_agree(reference, flipped, 0.03)
    assert not inference.outputs_agree(reference, reference * 0.5, 0.03)


def test_outputs_agree_ignores_a_flip_on_a_near_tie() -> None:
    reference = torch.tensor([[1.001, 1.0], [5.0, 0.0]])
    candidate = torch.tensor([[1.0, 1.001], [5.0, 0.0]])
    assert inference.outputs_agree(reference, candidate, 0.03)


def test_outputs_agree_rejects_non_finite_output() -> None:
    reference = torch.tensor([[1.0, 0.0]])
    assert not inference.outputs_agree(reference, torch.tensor([[float("nan"), 0.0]]), 0.03)


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n", False),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
    ],
)
def test_cpu_has_native_bf16_reads_cpu_flags(tmp_path: Path, cpuinfo: str, expected: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert inference.cpu_has_native_bf16(str(path)) is expected


def test_cpu_has_native_bf16_without_cpuinfo_is_false(tmp_path: Path) -> None:
    assert inference.cpu_has_native_bf16(str(tmp_path / "missing")) is False


def test_serving_threads_prefers_stepsage_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_TORCH_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert inference.serving_threads() == 2
    monkeypatch.delenv("STEPSAGE_TORCH_THREADS")
    assert inference.serving_threads() == 7
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    monkeypatch.delenv("SM_NUM_CPUS", raising=False)
    assert inference.serving_threads() is None


# ---- model_fn and predict_fn on a real artifact ----------------------------------------------------


def _reference_probabilities(artifact: Path, data: bytes) -> torch.Tensor:
    """fp32 probabilities computed here, independently of predict_fn."""
    from PIL import Image

    import architectures
    import presets

    config = json.loads((artifact / "model_config.json").read_text())
    network = architectures.build_model(config["architecture"], config["num_classes"], "none")
    network.load_state_dict(torch.load(artifact / "model.pth", weights_only=True))
    network.eval()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    batch = presets.eval_transform(config["image_size"], config["mean"], config["std"])(image).unsqueeze(0)
    with torch.no_grad():
        return torch.softmax(network(batch), dim=1)[0]


def test_fp32_predictions_match_an_independent_forward_pass(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPSAGE_PRECISION", "fp32")
    model = inference.model_fn(str(artifact))
    data = image_bytes("JPEG", size=(50, 40), seed=3)
    result = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(data, "image/jpeg"), model), None)
    )
    expected = _reference_probabilities(artifact, data)
    labels = json.loads((artifact / "labels.json").read_text())
    order = expected.argsort(descending=True).tolist()
    assert [p["label"] for p in result["predictions"]] == [labels[i] for i in order]
    for prediction, index in zip(result["predictions"], order, strict=True):
        assert prediction["score"] == pytest.approx(expected[index].item(), abs=1e-5)
    assert result["model"]["architecture"] == "resnet18"
    assert result["model"]["serving"]["mode"] == "fp32"
    assert result["model"]["serving"]["threads"] == 1


def test_top_k_limits_and_orders_predictions(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_PRECISION", "fp32")
    model = inference.model_fn(str(artifact))
    body = _json_body({"image": base64.b64encode(image_bytes()).decode(), "top_k": 2})
    two = inference.predict_fn(inference.input_fn(body, "application/json"), model)["predictions"]
    assert len(two) == 2
    assert two[0]["score"] >= two[1]["score"]
    # More than the model's classes: every class, once.
    body = _json_body({"image": base64.b64encode(image_bytes()).decode(), "top_k": 50})
    every = inference.predict_fn(inference.input_fn(body, "application/json"), model)["predictions"]
    assert sorted(p["label"] for p in every) == sorted(model_artifact.DEFAULT_LABELS)
    assert sum(p["score"] for p in every) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.skipif(not inference.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_auto_precision_uses_bf16_where_it_agrees(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_PRECISION", "auto")
    model = inference.model_fn(str(artifact))
    assert model.serving["mode"] == "bf16-autocast+channels_last"
    data = image_bytes(seed=5)
    scores = {
        p["label"]: p["score"]
        for p in inference.predict_fn(inference.input_fn(data, "image/jpeg"), model)["predictions"]
    }
    expected = _reference_probabilities(artifact, data)
    labels = json.loads((artifact / "labels.json").read_text())
    for index, label in enumerate(labels):
        assert scores[label] == pytest.approx(expected[index].item(), abs=inference.BF16_AGREEMENT_TOLERANCE)


def test_precision_falls_back_to_fp32_when_bf16_disagrees(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A negative tolerance makes every comparison fail, as a model that breaks under bf16 would.
    monkeypatch.setenv("STEPSAGE_PRECISION", "bf16")
    monkeypatch.setenv("STEPSAGE_AGREEMENT_TOLERANCE", "-1")
    model = inference.model_fn(str(artifact))
    assert model.serving["mode"] == "fp32"
    assert "disagreed" in model.serving["mode_reason"]
    assert next(model.network.parameters()).is_contiguous()


def test_bad_precision_setting_fails_loudly(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_PRECISION", "int4")
    with pytest.raises(ValueError, match="auto, fp32, bf16 or fp16"):
        inference.model_fn(str(artifact))


def test_model_fn_rejects_labels_that_do_not_match(tmp_path: Path) -> None:
    artifact = model_artifact.build_model_artifact(tmp_path / "model")
    (artifact / "labels.json").write_text(json.dumps(["only_one"]))
    with pytest.raises(ValueError, match=r"labels\.json has 1 labels"):
        inference.model_fn(str(artifact))


class _Payload:
    """Pickles to a call of print: what weights_only=True must refuse to run."""

    def __reduce__(self) -> tuple:
        return (print, ("pickled code ran",))


def test_model_fn_refuses_pickled_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = model_artifact.build_model_artifact(tmp_path / "model")
    torch.save({"fc.weight": _Payload()}, artifact / "model.pth")
    with pytest.raises(Exception, match=r"(?i)weights.only|unpickl"):
        inference.model_fn(str(artifact))
    assert "pickled code ran" not in capsys.readouterr().out
