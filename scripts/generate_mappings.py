"""Generate template.yaml's region -> SageMaker image Mappings with the sagemaker v2 SDK (build time only)."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# The v2 SDK warns about its deprecation and its config search on import; neither matters for a table lookup.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
BEGIN_MARKER = "# BEGIN GENERATED MAPPINGS: scripts/generate_mappings.py --write (do not edit by hand)"
END_MARKER = "# END GENERATED MAPPINGS"

# One framework version for training and serving, so the endpoint loads what the job saved without skew.
# 2.6 is the newest version that the SDK lists for both the training and the inference DLC.
PYTORCH_VERSION = "2.6"
PY_VERSION = "py312"

# Representative instances: the SDK derives the image's processor (cpu/gpu) from the instance family.
PROCESSOR_PROBES = {"Cpu": "ml.m5.xlarge", "Gpu": "ml.g5.xlarge"}

# Instance types offered by the template's parameters. Each maps to the image keys for its processor, so the
# template picks an image with two nested FindInMap calls and no string functions (CloudFormation has none).
TRAINING_INSTANCE_TYPES = (
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.m5.4xlarge",
    "ml.c5.xlarge",
    "ml.c5.2xlarge",
    "ml.c5.4xlarge",
    "ml.g4dn.xlarge",
    "ml.g4dn.2xlarge",
    "ml.g5.xlarge",
    "ml.g5.2xlarge",
    "ml.p3.2xlarge",
)
ENDPOINT_INSTANCE_TYPES = (
    "ml.t2.medium",
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.c5.large",
    "ml.c5.xlarge",
    "ml.g4dn.xlarge",
    "ml.g5.xlarge",
)

# retrieve(framework, region, version=..., py_version=..., instance_type=..., image_scope=...) -> image URI
Retriever = Callable[..., str]


def pytorch_regions() -> list[str]:
    """Regions where the SDK lists both the training and the inference image for PYTORCH_VERSION."""
    from sagemaker import image_uris

    config = image_uris.config_for_framework("pytorch")
    regions: set[str] | None = None
    for scope in ("training", "inference"):
        full_version = config[scope]["version_aliases"].get(PYTORCH_VERSION, PYTORCH_VERSION)
        scope_regions = set(config[scope]["versions"][full_version]["registries"])
        regions = scope_regions if regions is None else regions & scope_regions
    return sorted(regions or ())


def debugger_regions() -> set[str]:
    from sagemaker import image_uris

    config = image_uris.config_for_framework("debugger")
    return set(config["versions"]["latest"]["registries"])


def processor_of(instance_type: str, retrieve: Retriever) -> str:
    """'Cpu' or 'Gpu', as the SDK's own image choice for this instance type says."""
    uri = retrieve(
        "pytorch",
        "us-east-1",
        version=PYTORCH_VERSION,
        py_version=PY_VERSION,
        instance_type=instance_type,
        image_scope="training",
    )
    tag = uri.rsplit(":", 1)[-1]
    if "-gpu-" in tag:
        return "Gpu"
    if "-cpu-" in tag:
        return "Cpu"
    raise ValueError(f"cannot tell the processor of {instance_type} from image tag {tag!r}")


def build_mappings(
    regions: Iterable[str], rule_regions: set[str], retrieve: Retriever
) -> dict[str, dict[str, dict[str, str]]]:
    images: dict[str, dict[str, str]] = {}
    for region in sorted(regions):
        entry: dict[str, str] = {}
        for scope in ("training", "inference"):
            for processor, probe in PROCESSOR_PROBES.items():
                entry[f"{scope.capitalize()}{processor}"] = retrieve(
                    "pytorch",
                    region,
                    version=PYTORCH_VERSION,
                    py_version=PY_VERSION,
                    instance_type=probe,
                    image_scope=scope,
                )
        # Managed Debugger rules exist in fewer regions; an empty value says that mode is unavailable there.
        entry["DebuggerRules"] = retrieve("debugger", region) if region in rule_regions else ""
        images[region] = entry

    instance_types: dict[str, dict[str, str]] = {}
    for instance_type in sorted(set(TRAINING_INSTANCE_TYPES) | set(ENDPOINT_INSTANCE_TYPES)):
        processor = processor_of(instance_type, retrieve)
        instance_types[instance_type] = {
            "TrainingImageKey": f"Training{processor}",
            "InferenceImageKey": f"Inference{processor}",
        }
    return {"SageMakerImages": images, "InstanceTypes": instance_types}


def render_block(mappings: dict[str, dict[str, dict[str, str]]]) -> str:
    lines = [
        BEGIN_MARKER,
        f"# PyTorch {PYTORCH_VERSION} ({PY_VERSION}) DLC images and the Debugger rule image, per region.",
        "Mappings:",
    ]
    for mapping_name, mapping in mappings.items():
        lines.append(f"  {mapping_name}:")
        for top_key, values in mapping.items():
            lines.append(f"    {top_key}:")
            lines.extend(f'      {key}: "{value}"' for key, value in values.items())
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def replace_block(template_text: str, block: str) -> str:
    start = template_text.find(BEGIN_MARKER)
    end = template_text.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"template has no '{BEGIN_MARKER}' ... '{END_MARKER}' block")
    end_of_block = template_text.index("\n", end) + 1
    return template_text[:start] + block + template_text[end_of_block:]


def sdk_retriever() -> Retriever:
    from sagemaker import image_uris

    return image_uris.retrieve


def generate_block() -> str:
    return render_block(build_mappings(pytorch_regions(), debugger_regions(), sdk_retriever()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the block in the template")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed block is out of date")
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH)
    args = parser.parse_args(argv)

    block = generate_block()
    if not (args.write or args.check):
        sys.stdout.write(block)
        return 0
    current = args.template.read_text()
    updated = replace_block(current, block)
    if args.check:
        if updated != current:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), updated.splitlines(True)))
            print("Mappings are out of date: run `make mappings`.", file=sys.stderr)
            return 1
        return 0
    args.template.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
