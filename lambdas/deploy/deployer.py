"""Deploy's one job: champion/challenger, then CreateModel, CreateEndpointConfig and Create/UpdateEndpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from deploy_decisions import EndpointSettings, compare, endpoint_config_request, model_request

from stepsage_lambda import naming
from stepsage_lambda.endpoint_services import EndpointServices
from stepsage_lambda.errors import ArtifactMissing, EndpointBusy
from stepsage_lambda.held_out import score_endpoint
from stepsage_lambda.payloads import ChampionKept, Comparison, DeployInput, Deployment
from stepsage_lambda.s3_api import S3Api
from stepsage_lambda.sagemaker_api import BUSY_ENDPOINT_STATES, SageMakerApi
from stepsage_lambda.settings import declared, integer, number, text

EVALUATION, LABELS = "evaluation.json", "labels.json"


@dataclass(frozen=True)
class DeploySettings:
    """DeployFunction's environment, read once per cold start by its handler."""

    endpoint: EndpointSettings
    stack_name: str
    champion_max_images: int
    champion_tolerance: float
    invoke_threads: int

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        *EndpointSettings.ENV_VARS,
        "STACK_NAME",
        "CHAMPION_MAX_IMAGES",
        "CHAMPION_TOLERANCE",
        "INVOKE_THREADS",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeploySettings:
        env = declared(env, cls)
        return cls(
            endpoint=EndpointSettings.from_env(env),
            stack_name=text(env, "STACK_NAME", "stepsage"),
            champion_max_images=integer(env, "CHAMPION_MAX_IMAGES", 1000, minimum=1),
            champion_tolerance=number(env, "CHAMPION_TOLERANCE", 0.0),
            invoke_threads=integer(env, "INVOKE_THREADS", 8, minimum=1),
        )


def challenger_facts(model_artifacts: str, s3: S3Api) -> tuple[float, list[str]]:
    """(test accuracy from evaluation.json, labels.json) of the newly trained model."""
    found = s3.read_tar_members(model_artifacts, (EVALUATION, LABELS))
    missing = [name for name in (EVALUATION, LABELS) if name not in found]
    if missing:
        raise ArtifactMissing(f"{model_artifacts} lacks {', '.join(missing)}")
    return float(json.loads(found[EVALUATION])["accuracy"]), list(json.loads(found[LABELS]))


def champion_labels(endpoint: Mapping[str, Any], services: EndpointServices) -> list[str] | None:
    """labels.json of the model the endpoint serves now, read from that model's own artifact."""
    config = services.sagemaker.describe_endpoint_config(endpoint["EndpointConfigName"])
    model = services.sagemaker.describe_model(config["ProductionVariants"][0]["ModelName"])
    artifact = model["PrimaryContainer"]["ModelDataUrl"]
    raw = services.s3.read_tar_member(artifact, LABELS)
    return list(json.loads(raw)) if raw is not None else None


def usable_endpoint(endpoint_name: str, sagemaker: SageMakerApi) -> dict[str, Any] | None:
    """The endpoint if it can be updated now, None if absent; EndpointBusy while another run holds it."""
    endpoint = sagemaker.find_endpoint(endpoint_name)
    if endpoint is None:
        return None
    status = endpoint["EndpointStatus"]
    if status in BUSY_ENDPOINT_STATES:
        raise EndpointBusy(f"endpoint {endpoint_name} is {status}")
    if status == "Failed":
        # A failed endpoint cannot be updated: delete it, and the retry finds it gone and creates it anew.
        sagemaker.delete_endpoint(endpoint_name)
        raise EndpointBusy(f"endpoint {endpoint_name} had failed and is being deleted")
    return endpoint


def challenge(
    endpoint: Mapping[str, Any] | None,
    challenger_accuracy: float,
    labels: list[str],
    test_prefix: str,
    settings: DeploySettings,
    services: EndpointServices,
) -> Comparison:
    if endpoint is None:
        return compare(challenger_accuracy, None, champion_exists=False)
    if champion_labels(endpoint, services) != labels:
        return compare(challenger_accuracy, None, labels_match=False)
    score = score_endpoint(
        endpoint["EndpointName"],
        test_prefix,
        settings.champion_max_images,
        s3=services.s3,
        runtime=services.runtime,
        threads=settings.invoke_threads,
    )
    return compare(
        challenger_accuracy,
        score.accuracy,
        labels_match=True,
        images=score.total,
        tolerance=settings.champion_tolerance,
    )


def deploy(
    event: DeployInput, *, settings: DeploySettings, services: EndpointServices
) -> Deployment | ChampionKept:
    dataset_name = event.dataset.dataset_name
    execution_name, model_artifacts = event.execution_name, event.model_artifacts
    endpoint_name = naming.endpoint_name(settings.stack_name, dataset_name)
    endpoint = usable_endpoint(endpoint_name, services.sagemaker)
    accuracy, labels = challenger_facts(model_artifacts, services.s3)
    comparison = challenge(endpoint, accuracy, labels, event.dataset.channels.test, settings, services)
    previous = endpoint["EndpointConfigName"] if endpoint else None
    if comparison.decision != "deploy":
        services.sagemaker.add_tags(endpoint["EndpointArn"], comparison.as_tags())  # type: ignore[index]
        return ChampionKept(
            endpoint_name=endpoint_name,
            comparison=comparison,
            expected_accuracy=accuracy,
            previous_endpoint_config_name=previous,
        )

    serving = settings.endpoint
    tags = naming.stack_tags(settings.stack_name, dataset_name, execution_name)
    recorded = tags + [{"Key": k, "Value": naming.tag_value(v)} for k, v in comparison.as_tags().items()]
    model_name = naming.model_name(execution_name)
    config_name = naming.endpoint_config_name(execution_name)
    services.sagemaker.create_model(
        model_request(model_name, model_artifacts, serving, event.role_arn, recorded)
    )
    services.sagemaker.create_endpoint_config(
        endpoint_config_request(config_name, model_name, serving, recorded)
    )
    if endpoint is None:
        services.sagemaker.create_endpoint(endpoint_name, config_name, tags)
    else:
        services.sagemaker.switch_endpoint_config(endpoint_name, config_name)
        services.sagemaker.add_tags(endpoint["EndpointArn"], comparison.as_tags())
    return Deployment(
        endpoint_name=endpoint_name,
        created=endpoint is None,
        model_name=model_name,
        endpoint_config_name=config_name,
        endpoint_kind=serving.kind,  # type: ignore[arg-type]
        expected_accuracy=accuracy,
        previous_endpoint_config_name=previous,
        comparison=comparison,
    )
