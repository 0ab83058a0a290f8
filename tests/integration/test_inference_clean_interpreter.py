"""code/inference.py runs alone, as in the serving container: `python -I` with only code/ on the path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from model_artifact import build_model_artifact, image_bytes, png_bomb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Runs in the clean interpreter. A meta-path finder refuses stepsage (and boto3, which only Lambdas have),
# and records the attempt, so an import hidden behind try/except is caught too.
ROUND_TRIP = textwrap.dedent(
    """
    import base64, json, sys

    attempted = []

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("stepsage", "boto3", "botocore"):
                attempted.append(name)
                raise ImportError(f"{name} is not in the serving container")
            return None

    sys.meta_path.insert(0, Refuse())
    model_dir, jpeg_path, bomb_path = sys.argv[1:4]
    sys.path.insert(0, model_dir + "/code")
    import inference

    model = inference.model_fn(model_dir)
    results = {}
    with open(jpeg_path, "rb") as f:
        jpeg = f.read()

    def serve(body, content_type, accept):
        prediction = inference.predict_fn(inference.input_fn(body, content_type), model)
        return json.loads(inference.output_fn(prediction, accept))

    results["jpeg"] = serve(jpeg, "image/jpeg", "application/json")
    as_json = json.dumps({"image": base64.b64encode(jpeg).decode(), "top_k": 1})
    results["json"] = serve(as_json, "application/json", None)
    errors = {}
    with open(bomb_path, "rb") as f:
        bomb = f.read()
    cases = {
        "bomb": (bomb, "image/png"),
        "type": (jpeg, "text/plain"),
        "empty": (b"", "image/png"),
        "garbage": (b"garbage", "image/jpeg"),
    }
    for name, (payload, content_type) in cases.items():
        try:
            inference.input_fn(payload, content_type)
        except inference.InferenceError as e:
            errors[name] = [type(e).__name__, e.status_code]
    results["errors"] = errors
    results["attempted"] = attempted
    results["flags"] = {"isolated": sys.flags.isolated, "ignore_environment": sys.flags.ignore_environment}
    results["modules"] = sorted({m.split(".")[0] for m in sys.modules})
    import contracts
    results["contracts_from"] = contracts.__file__
    print(json.dumps(results))
    """
)


def run_isolated(artifact: Path, workdir: Path) -> dict:
    """Run ROUND_TRIP in `python -I` on `artifact` and return what it printed."""
    (workdir / "image.jpg").write_bytes(image_bytes("JPEG", size=(48, 36), seed=7))
    (workdir / "bomb.png").write_bytes(png_bomb(9000, 9000))
    completed = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            ROUND_TRIP,
            str(artifact),
            str(workdir / "image.jpg"),
            str(workdir / "bomb.png"),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env={"STEPSAGE_PRECISION": "fp32", "STEPSAGE_TORCH_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("clean")
    artifact = build_model_artifact(workdir / "model")
    return {"result": run_isolated(artifact, workdir), "artifact": artifact, "dir": workdir}


def test_runs_isolated_and_never_imports_stepsage(clean_run: dict) -> None:
    result = clean_run["result"]
    assert result["flags"] == {"isolated": 1, "ignore_environment": 1}
    assert result["attempted"] == []
    assert "stepsage" not in result["modules"]
    assert {"torch", "torchvision", "PIL", "presets", "architectures", "inference"} <= set(result["modules"])
    # The artifact's own copy of the contracts, not one the interpreter happens to have elsewhere.
    assert Path(result["contracts_from"]).is_relative_to(clean_run["artifact"] / "code" / "contracts")


def test_round_trip_matches_the_in_process_model(clean_run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSAGE_PRECISION", "fp32")
    monkeypatch.syspath_prepend(str(clean_run["artifact"] / "code"))

    path = clean_run["artifact"] / "code" / "inference.py"
    spec = importlib.util.spec_from_file_location("clean_reference_inference", path)
    assert spec and spec.loader
    reference = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, reference)  # dataclasses look their module up there
    spec.loader.exec_module(reference)
    model = reference.model_fn(str(clean_run["artifact"]))
    jpeg = (clean_run["dir"] / "image.jpg").read_bytes()
    expected = reference.predict_fn(reference.input_fn(jpeg, "image/jpeg"), model)["predictions"]

    result = clean_run["result"]
    assert [p["label"] for p in result["jpeg"]["predictions"]] == [p["label"] for p in expected]
    for got, want in zip(result["jpeg"]["predictions"], expected, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert result["json"]["predictions"] == result["jpeg"]["predictions"][:1]
    assert result["jpeg"]["model"]["num_classes"] == 3
    assert result["jpeg"]["model"]["serving"]["mode"] == "fp32"


def test_bad_inputs_raise_typed_errors_in_isolation(clean_run: dict) -> None:
    assert clean_run["result"]["errors"] == {
        "bomb": ["TooManyPixelsError", 400],
        "type": ["UnsupportedContentTypeError", 415],
        "empty": ["EmptyBodyError", 400],
        "garbage": ["UndecodableInputError", 400],
    }


def test_a_stepsage_import_would_be_caught(tmp_path: Path) -> None:
    """The guard above must be able to fail: the same harness flags a code/ file that imports stepsage."""
    artifact = build_model_artifact(tmp_path / "model")
    inference_py = artifact / "code" / "inference.py"
    guarded_import = "\ntry:\n    import stepsage\nexcept ImportError:\n    pass\n"
    inference_py.write_text(inference_py.read_text() + guarded_import)
    assert run_isolated(artifact, tmp_path)["attempted"] == ["stepsage"]
