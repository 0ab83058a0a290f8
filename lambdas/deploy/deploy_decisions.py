"""Deploy's decisions as pure functions: champion or challenger, the model and endpoint config requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from stepsage_lambda.errors import ConfigurationError
from stepsage_lambda.payloads import Comparison
from stepsage_lambda.settings import choice, declared, integer, text

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

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "INFERENCE_IMAGE_URI",
        "SERVERLESS_INFERENCE_IMAGE_URI",
        "ENDPOINT_KIND",
        "SERVERLESS_MEMORY_MB",
        "SERVERLESS_MAX_CONCURRENCY",
        "ENDPOINT_INSTANCE_TYPE",
        "ENDPOINT_INSTANCE_COUNT",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EndpointSettings:
        env = declared(env, cls)
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

    def result(decision: str, reason: str, champion: float | None) -> Comparison:
        return Comparison.model_validate(
            {
                "decision": decision,
                "reason": reason,
                "challenger_accuracy": challenger_accuracy,
                "champion_accuracy": champion,
                "images": images,
            }
        )

    if not champion_exists:
        return result("deploy", "no-champion", None)
    if not labels_match or champion_accuracy is None:
        # Accuracy over different label sets is not comparable; the new labels are what the data now says.
        return result("deploy", "labels-changed", None)
    if challenger_accuracy + tolerance >= champion_accuracy:
        return result("deploy", "challenger-at-least-as-good", champion_accuracy)
    return result("keep-champion", "champion-better", champion_accuracy)


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
