"""Deploy's decisions as pure functions: champion or challenger, request shapes, smoke verdict, pruning."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stepsage_lambda.errors import ConfigurationError
from stepsage_lambda.settings import choice, integer, text

ENDPOINT_KINDS = ("serverless", "realtime")
# Serverless memory must be one of these sizes (MB); AWS rejects anything else.
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)
# The model server contract: the artifact already holds code/inference.py, so the container runs it as is.
MODEL_ENVIRONMENT = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


@dataclass(frozen=True)
class EndpointSettings:
    kind: str
    inference_image: str
    serverless_memory_mb: int
    serverless_max_concurrency: int
    instance_type: str
    instance_count: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EndpointSettings:
        memory = integer(env, "SERVERLESS_MEMORY_MB", 3072, minimum=1024)
        if memory not in SERVERLESS_MEMORY_SIZES:
            allowed = ", ".join(map(str, SERVERLESS_MEMORY_SIZES))
            raise ConfigurationError(
                f"SERVERLESS_MEMORY_MB={memory} is not allowed; choose one of: {allowed}"
            )
        kind = choice(env, "ENDPOINT_KIND", ENDPOINT_KINDS, "serverless")
        # Serverless endpoints run on CPU only, so they may need a different image than real-time instances.
        serverless_image = env.get("SERVERLESS_INFERENCE_IMAGE_URI") if kind == "serverless" else None
        return cls(
            kind=kind,
            inference_image=serverless_image or text(env, "INFERENCE_IMAGE_URI"),
            serverless_memory_mb=memory,
            serverless_max_concurrency=integer(env, "SERVERLESS_MAX_CONCURRENCY", 5, minimum=1),
            instance_type=text(env, "ENDPOINT_INSTANCE_TYPE", "ml.m5.large"),
            instance_count=integer(env, "ENDPOINT_INSTANCE_COUNT", 1, minimum=1),
        )


@dataclass(frozen=True)
class Comparison:
    """Champion/challenger on the same held-out split; `champion_accuracy` is None when there is none."""

    decision: str  # "deploy" or "keep-champion"
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    images: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_tags(self) -> dict[str, str]:
        champion = "none" if self.champion_accuracy is None else f"{self.champion_accuracy:.4f}"
        return {
            "stepsage:decision": self.decision,
            "stepsage:reason": self.reason,
            "stepsage:challenger-accuracy": f"{self.challenger_accuracy:.4f}",
            "stepsage:champion-accuracy": champion,
            "stepsage:compared-images": str(self.images),
        }


def compare(
    challenger_accuracy: float,
    champion_accuracy: float | None,
    *,
    champion_exists: bool = True,
    labels_match: bool = True,
    images: int = 0,
    tolerance: float = 0.0,
) -> Comparison:
    """Deploy with no champion, with changed labels, or when the challenger is at least as good."""
    if not champion_exists:
        return Comparison("deploy", "no-champion", challenger_accuracy, None, images)
    if not labels_match or champion_accuracy is None:
        # Accuracy over different label sets is not comparable; the new labels are what the data now says.
        return Comparison("deploy", "labels-changed", challenger_accuracy, None, images)
    if challenger_accuracy + tolerance >= champion_accuracy:
        return Comparison(
            "deploy", "challenger-at-least-as-good", challenger_accuracy, champion_accuracy, images
        )
    return Comparison("keep-champion", "champion-better", challenger_accuracy, champion_accuracy, images)


def model_request(
    model_name: str,
    model_artifacts: str,
    settings: EndpointSettings,
    role_arn: str,
    tags: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "ModelName": model_name,
        "PrimaryContainer": {
            "Image": settings.inference_image,
            "ModelDataUrl": model_artifacts,
            "Environment": dict(MODEL_ENVIRONMENT),
        },
        "ExecutionRoleArn": role_arn,
        "Tags": tags,
    }


def endpoint_config_request(
    config_name: str, model_name: str, settings: EndpointSettings, tags: list[dict[str, str]]
) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": model_name}
    if settings.kind == "serverless":
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": settings.serverless_memory_mb,
            "MaxConcurrency": settings.serverless_max_concurrency,
        }
    else:
        variant.update(
            InstanceType=settings.instance_type,
            InitialInstanceCount=settings.instance_count,
            InitialVariantWeight=1.0,
        )
    return {"EndpointConfigName": config_name, "ProductionVariants": [variant], "Tags": tags}


def sample_evenly(items: Sequence[str], limit: int) -> list[str]:
    """At most `limit` items spread over the whole (class-sorted) list, so every class tends to appear."""
    if limit <= 0:
        return []
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def smoke_threshold(expected_accuracy: float, images: int, margin: float) -> float:
    """The lowest smoke-test accuracy that still agrees with evaluation.json.

    With few images the sample's own noise can exceed the margin, so the bound widens to three binomial
    standard deviations when that is larger.
    """
    if images <= 0:
        return 0.0
    noise = 3 * math.sqrt(max(expected_accuracy * (1 - expected_accuracy), 0.0) / images)
    return max(0.0, expected_accuracy - max(margin, noise))


def stale_resources(
    newest_first: Sequence[tuple[str, Mapping[str, str]]],
    *,
    stack_name: str,
    dataset_name: str,
    keep: int,
    protected: set[str],
) -> list[str]:
    """Names of this stack's resources for this dataset beyond the newest `keep`, never a protected one."""
    ours = [
        name
        for name, tags in newest_first
        if tags.get("stepsage:stack") == stack_name and tags.get("stepsage:dataset") == dataset_name
    ]
    return [name for name in ours[keep:] if name not in protected]
