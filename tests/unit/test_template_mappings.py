"""scripts/generate_mappings.py renders and splices the Mappings block; the committed block is well formed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from stepsage.aws import cfn_yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("generate_mappings", ROOT / "scripts/generate_mappings.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def fake_retrieve(framework: str, region: str, **kwargs: Any) -> str:
    if framework == "debugger":
        return f"111111111111.dkr.ecr.{region}.amazonaws.com/sagemaker-debugger-rules:latest"
    processor = "gpu" if kwargs["instance_type"].split(".")[1][0] in "gp" else "cpu"
    scope = kwargs["image_scope"]
    return (
        f"222222222222.dkr.ecr.{region}.amazonaws.com/pytorch-{scope}:{kwargs['version']}-{processor}-py312"
    )


def test_build_mappings_keys_images_by_region_and_processor() -> None:
    mappings = generate.build_mappings(["eu-west-1", "ap-east-2"], {"eu-west-1"}, fake_retrieve)
    images = mappings["SageMakerImages"]
    assert list(images) == ["ap-east-2", "eu-west-1"]
    assert images["eu-west-1"]["TrainingGpu"].endswith("pytorch-training:2.6-gpu-py312")
    assert images["eu-west-1"]["InferenceCpu"].endswith("pytorch-inference:2.6-cpu-py312")
    assert images["eu-west-1"]["DebuggerRules"].endswith("sagemaker-debugger-rules:latest")
    # A region without the managed rule image says so with an empty value.
    assert images["ap-east-2"]["DebuggerRules"] == ""
    assert mappings["InstanceTypes"]["ml.g5.xlarge"] == {
        "TrainingImageKey": "TrainingGpu",
        "InferenceImageKey": "InferenceGpu",
    }
    assert mappings["InstanceTypes"]["ml.m5.large"]["TrainingImageKey"] == "TrainingCpu"


def test_unknown_processor_fails_loudly() -> None:
    with pytest.raises(ValueError, match="processor"):
        generate.processor_of("ml.x9.large", lambda *a, **k: "123.dkr.ecr.r.amazonaws.com/x:2.6-tpu-py312")


def test_rendered_block_parses_back_and_splices_in_place() -> None:
    mappings = generate.build_mappings(["us-east-1"], {"us-east-1"}, fake_retrieve)
    block = generate.render_block(mappings)
    template = (
        "Parameters: {}\n"
        f"{generate.BEGIN_MARKER}\nMappings:\n  Old: {{k: {{v: x}}}}\n{generate.END_MARKER}\n"
        "Resources: {}\n"
    )
    spliced = generate.replace_block(template, block)
    assert spliced.startswith("Parameters: {}\n") and spliced.endswith("Resources: {}\n")
    assert cfn_yaml.loads(spliced)["Mappings"] == mappings
    assert generate.replace_block(spliced, block) == spliced


def test_replace_block_needs_the_markers() -> None:
    with pytest.raises(ValueError, match="BEGIN GENERATED"):
        generate.replace_block("Resources: {}\n", "x\n")


def test_committed_block_is_the_script_output_shape() -> None:
    text = (ROOT / "template.yaml").read_text()
    start, end = text.index(generate.BEGIN_MARKER), text.index(generate.END_MARKER)
    committed = cfn_yaml.loads(text[start:end])["Mappings"]
    assert generate.render_block(committed) == text[start : text.index("\n", end) + 1]
    offered = {*generate.TRAINING_INSTANCE_TYPES, *generate.ENDPOINT_INSTANCE_TYPES}
    assert set(committed["InstanceTypes"]) == offered
    assert len(committed["SageMakerImages"]) >= 20
