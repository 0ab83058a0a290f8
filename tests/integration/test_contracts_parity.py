"""Every unit carries a byte-identical copy of contracts/; the facts it owns match their other spellings."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from lambda_harness import load_lambda_module

from contracts import datasets, images, limits
from stepsage.aws import cfn_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"


def contracts_drift(copy: Path, source: Path = CONTRACTS) -> list[str]:
    """What differs between the contracts package and a unit's copy of it: missing, extra or changed files."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        }

    wanted, found = files(source), files(copy) if copy.is_dir() else {}
    problems = [f"missing {name}" for name in sorted(wanted.keys() - found.keys())]
    problems += [f"extra {name}" for name in sorted(found.keys() - wanted.keys())]
    problems += [
        f"changed {name}" for name in sorted(wanted.keys() & found.keys()) if wanted[name] != found[name]
    ]
    return problems


def _make(makefile: Path, target: str, artifacts: Path) -> None:
    # PIP=true skips the pinned requirements (network, minutes); the copy steps under test still run.
    result = subprocess.run(
        ["make", "-f", str(makefile), target, f"ARTIFACTS_DIR={artifacts}", "PIP=true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def common_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("common")
    _make(ROOT / "lambdas/common/Makefile", "build-CommonLayer", out)
    return out / "python"


@pytest.fixture(scope="module")
def code_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("code")
    _make(ROOT / "layers/sagemaker_code/Makefile", "build-SageMakerCodeLayer", out)
    return out / "sagemaker_code"


def test_the_lambda_layer_carries_the_contracts(common_layer: Path) -> None:
    assert (common_layer / "stepsage_lambda").is_dir()
    assert contracts_drift(common_layer / "contracts") == []


def test_the_code_layer_and_the_sourcedir_bundle_carry_the_contracts(code_layer: Path) -> None:
    assert contracts_drift(code_layer / "training_code" / "contracts") == []
    bundle = load_lambda_module("launch_hpo", "code_bundle")
    with tarfile.open(fileobj=io.BytesIO(bundle.build_sourcedir(code_layer))) as archive:
        unpacked = Path(code_layer.parent / "unpacked")
        archive.extractall(unpacked, filter="data")
    # At the sourcedir's root, beside train.py: SageMaker puts that folder first on sys.path.
    assert (unpacked / "train.py").is_file()
    assert contracts_drift(unpacked / "contracts") == []


def test_the_model_artifact_carries_the_contracts(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "training_code"))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT / "training_code"))
    train.write_model_artifact(
        tmp_path,
        state_dict={},
        model_config={},
        labels=[],
        evaluation_result={},
        run_info={},
        inference_dir=ROOT / "inference_code",
    )
    assert contracts_drift(tmp_path / "code" / "contracts") == []
    assert (tmp_path / "code" / "inference.py").read_bytes() == (
        ROOT / "inference_code/inference.py"
    ).read_bytes()


def test_a_deliberate_drift_is_caught(common_layer: Path, tmp_path: Path) -> None:
    copy = tmp_path / "contracts"
    shutil.copytree(common_layer / "contracts", copy)
    assert contracts_drift(copy) == []
    limits_file = copy / "limits.py"
    limits_file.write_text(limits_file.read_text().replace("MAX_TOP_K = 100", "MAX_TOP_K = 50"))
    (copy / "stale.py").write_text("")
    (copy / "datasets.py").unlink()
    assert contracts_drift(copy) == ["missing datasets.py", "extra stale.py", "changed limits.py"]


# ---- facts spelled outside Python: template.yaml ------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(ROOT / "template.yaml")


def test_the_upload_rule_matches_the_key_grammar(template: dict) -> None:
    rule = template["Resources"]["StartPipelineFunction"]["Properties"]["Events"]["DatasetUploaded"]
    keys = rule["Properties"]["Pattern"]["detail"]["object"]["key"]
    assert tuple(keys) == datasets.EVENT_KEY_FILTER


def test_the_served_dataset_parameter_is_a_dataset_name_that_maps_to_its_endpoint(template: dict) -> None:
    """ServedDataset takes exactly the dataset names (contracts.datasets), and POST / reaches the endpoint the
    deploy step gives that dataset in this stack: the inference Lambda names it with the same function."""
    image_request = load_lambda_module("inference", "image_request")
    from stepsage_lambda import naming

    parameter = template["Parameters"]["ServedDataset"]
    assert parameter["AllowedPattern"] == f"^{datasets.NAME_PATTERN}$"
    assert parameter["MaxLength"] == datasets.NAME_MAX_LENGTH
    pattern = re.compile(parameter["AllowedPattern"])
    inference = template["Resources"]["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    assert inference["SERVED_DATASET"] == {"Ref": "ServedDataset"} and "ENDPOINT_NAME" not in inference
    assert template["Globals"]["Function"]["Environment"]["Variables"]["STACK_NAME"] == {
        "Ref": "AWS::StackName"
    }
    valid = ["a", "dogImages", "x" * 100, "a-b--c", "Z9", "dog_breeds.v2", "a.", "9_-"]
    invalid = ["", "-a", ".a", "_a", "x" * 101, "a b", "a/b", "caf\u00e9", "a\n", "a%20"]
    for name in valid + invalid:
        # The parameter, the upload rule and every unit agree on what a dataset name is.
        # CloudFormation matches AllowedPattern against the whole value (Java), hence fullmatch.
        assert bool(pattern.fullmatch(name)) == datasets.is_valid_name(name) == (name in valid), name
    for stack, name in [("stepsage", n) for n in valid] + [("s" * 128, "dogImages"), ("a-b", "c")]:
        settings = image_request.InferenceSettings.from_env({"STACK_NAME": stack, "SERVED_DATASET": name})
        served = image_request.default_endpoint_name(settings.stack_name, settings.served_dataset)
        assert served == naming.endpoint_name(stack, name)
    assert datasets.is_valid_name(parameter["Default"])


def test_every_staged_format_has_a_media_type_the_endpoint_takes() -> None:
    sys.path.insert(0, str(ROOT / "training_code"))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "parity_inference", ROOT / "inference_code/inference.py"
        )
        assert spec and spec.loader
        inference = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = inference  # its dataclasses look their module up there
        spec.loader.exec_module(inference)
    finally:
        sys.path.remove(str(ROOT / "training_code"))
    for fmt in images.FORMATS:
        assert fmt.media_type in inference.CONTENT_TYPES
        assert images.endpoint_media_type(fmt) in inference.CONTENT_TYPES
    assert inference.MAX_TOP_K == limits.MAX_TOP_K and inference.DEFAULT_TOP_K == limits.DEFAULT_TOP_K


def test_contracts_import_only_the_standard_library() -> None:
    import ast

    for path in CONTRACTS.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: Pillow is imported inside decode(), where it is needed
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("contracts", "__future__"), (path.name, name)
