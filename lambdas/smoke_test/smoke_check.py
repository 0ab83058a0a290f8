"""SmokeTest's one job: score the new endpoint on held-out images; roll back on failure, prune on success."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from smoke_decisions import smoke_threshold, stale_resources

from stepsage_lambda import naming
from stepsage_lambda.endpoint_services import EndpointServices
from stepsage_lambda.errors import SmokeTestFailed
from stepsage_lambda.held_out import score_endpoint
from stepsage_lambda.payloads import Deployment, SmokeTestInput, SmokeTestPassed, SmokeTestSuperseded
from stepsage_lambda.settings import declared, integer, number, text


@dataclass(frozen=True)
class SmokeSettings:
    """SmokeTestFunction's environment, read once per cold start by its handler."""

    stack_name: str
    images: int
    margin: float
    invoke_threads: int
    keep_runtime_resources: int
    prune_scan_limit: int

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "STACK_NAME",
        "SMOKE_TEST_IMAGES",
        "SMOKE_TEST_MARGIN",
        "INVOKE_THREADS",
        "KEEP_RUNTIME_RESOURCES",
        "PRUNE_SCAN_LIMIT",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmokeSettings:
        env = declared(env, cls)
        return cls(
            stack_name=text(env, "STACK_NAME", "stepsage"),
            images=integer(env, "SMOKE_TEST_IMAGES", 20, minimum=1),
            margin=number(env, "SMOKE_TEST_MARGIN", 0.1),
            invoke_threads=integer(env, "INVOKE_THREADS", 8, minimum=1),
            keep_runtime_resources=integer(env, "KEEP_RUNTIME_RESOURCES", 3, minimum=1),
            prune_scan_limit=integer(env, "PRUNE_SCAN_LIMIT", 200, minimum=1),
        )


def roll_back(deployment: Deployment, services: EndpointServices) -> str:
    """Back to the config that served before; a first deployment has none, so its endpoint goes."""
    previous = deployment.previous_endpoint_config_name
    if previous:
        services.sagemaker.switch_endpoint_config(deployment.endpoint_name, previous)
        return f"rolled back to {previous}"
    services.sagemaker.delete_endpoint(deployment.endpoint_name)
    return "deleted the endpoint (no previous config)"


def prune(
    dataset_name: str, protected: set[str], settings: SmokeSettings, services: EndpointServices
) -> list[str]:
    """Delete this stack's configs and models for the dataset beyond the newest KEEP_RUNTIME_RESOURCES."""
    keep = settings.keep_runtime_resources
    stack = naming.tag_value(settings.stack_name)
    dataset = naming.tag_value(dataset_name)
    removed: list[str] = []
    scan = settings.prune_scan_limit
    sm = services.sagemaker
    configs = [
        (c["EndpointConfigName"], sm.tags_of(c["EndpointConfigArn"]))
        for c in sm.recent_endpoint_configs(scan)
    ]
    for name in stale_resources(
        configs, stack_name=stack, dataset_name=dataset, keep=keep, protected=protected
    ):
        sm.delete_endpoint_config(name)
        removed.append(name)
    models = [(m["ModelName"], sm.tags_of(m["ModelArn"])) for m in sm.recent_models(scan)]
    for name in stale_resources(
        models, stack_name=stack, dataset_name=dataset, keep=keep, protected=protected
    ):
        sm.delete_model(name)
        removed.append(name)
    return removed


def smoke_test(
    event: SmokeTestInput, *, settings: SmokeSettings, services: EndpointServices
) -> SmokeTestPassed | SmokeTestSuperseded:
    deployment, dataset = event.deployment, event.dataset
    endpoint_name = deployment.endpoint_name
    serving = services.sagemaker.find_endpoint(endpoint_name)
    if serving is None or serving["EndpointConfigName"] != deployment.endpoint_config_name:
        # A later run has taken the endpoint over; judging (or rolling back) its model is not ours to do.
        return SmokeTestSuperseded(endpoint_name=endpoint_name)
    score = score_endpoint(
        endpoint_name,
        dataset.channels.test,
        settings.images,
        s3=services.s3,
        runtime=services.runtime,
        threads=settings.invoke_threads,
    )
    expected = deployment.expected_accuracy
    threshold = smoke_threshold(expected, score.total, settings.margin)
    if score.total == 0 or score.accuracy < threshold:
        action = roll_back(deployment, services)
        raise SmokeTestFailed(
            f"{endpoint_name}: {score.correct}/{score.total} right ({score.accuracy:.3f}) is below "
            f"{threshold:.3f} (evaluation.json {expected:.3f}); {action}"
        )
    protected = {deployment.endpoint_config_name, deployment.model_name}
    if deployment.previous_endpoint_config_name:
        protected.add(deployment.previous_endpoint_config_name)
    return SmokeTestPassed(
        endpoint_name=endpoint_name,
        accuracy=score.accuracy,
        images=score.total,
        failed_calls=score.failed_calls,
        expected_accuracy=expected,
        threshold=threshold,
        pruned=prune(dataset.dataset_name, protected, settings, services),
    )
