"""SmokeTest's one job: score the new endpoint on held-out images; roll back on failure, prune on success."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploy_decisions import smoke_threshold, stale_resources
from deployer import Services
from held_out import score_endpoint

from stepsage_lambda import naming
from stepsage_lambda.errors import SmokeTestFailed
from stepsage_lambda.settings import integer, number, text


def roll_back(deployment: Mapping[str, Any], services: Services) -> str:
    """Back to the config that served before; a first deployment has none, so its endpoint goes."""
    previous = deployment.get("previous_endpoint_config_name")
    if previous:
        services.sagemaker.switch_endpoint_config(deployment["endpoint_name"], previous)
        return f"rolled back to {previous}"
    services.sagemaker.delete_endpoint(deployment["endpoint_name"])
    return "deleted the endpoint (no previous config)"


def prune(dataset_name: str, protected: set[str], env: Mapping[str, str], services: Services) -> list[str]:
    """Delete this stack's configs and models for the dataset beyond the newest KEEP_RUNTIME_RESOURCES."""
    keep = integer(env, "KEEP_RUNTIME_RESOURCES", 3, minimum=1)
    stack = naming.tag_value(text(env, "STACK_NAME", "stepsage"))
    dataset = naming.tag_value(dataset_name)
    removed: list[str] = []
    scan = integer(env, "PRUNE_SCAN_LIMIT", 200, minimum=1)
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
    *, deployment: Mapping[str, Any], dataset: Mapping[str, Any], env: Mapping[str, str], services: Services
) -> dict[str, Any]:
    endpoint_name = deployment["endpoint_name"]
    serving = services.sagemaker.find_endpoint(endpoint_name)
    if serving is None or serving["EndpointConfigName"] != deployment["endpoint_config_name"]:
        # A later run has taken the endpoint over; judging (or rolling back) its model is not ours to do.
        return {"status": "superseded", "endpoint_name": endpoint_name}
    score = score_endpoint(
        endpoint_name,
        dataset["channels"]["test"],
        integer(env, "SMOKE_TEST_IMAGES", 20, minimum=1),
        s3=services.s3,
        runtime=services.runtime,
        threads=integer(env, "INVOKE_THREADS", 8, minimum=1),
    )
    expected = float(deployment["expected_accuracy"])
    threshold = smoke_threshold(expected, score.total, number(env, "SMOKE_TEST_MARGIN", 0.1))
    summary = {
        "endpoint_name": endpoint_name,
        "accuracy": score.accuracy,
        "images": score.total,
        "failed_calls": score.failed_calls,
        "expected_accuracy": expected,
        "threshold": threshold,
    }
    if score.total == 0 or score.accuracy < threshold:
        action = roll_back(deployment, services)
        raise SmokeTestFailed(
            f"{endpoint_name}: {score.correct}/{score.total} right ({score.accuracy:.3f}) is below "
            f"{threshold:.3f} (evaluation.json {expected:.3f}); {action}"
        )
    protected = {deployment["endpoint_config_name"], deployment["model_name"]}
    if deployment.get("previous_endpoint_config_name"):
        protected.add(deployment["previous_endpoint_config_name"])
    pruned = prune(str(dataset["dataset_name"]), protected, env, services)
    return {**summary, "status": "passed", "pruned": pruned}
