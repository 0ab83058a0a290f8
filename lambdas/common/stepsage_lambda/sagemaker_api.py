"""SageMaker in the pipeline's own verbs, over an injectable boto3 client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stepsage_lambda.clients import client as default_client
from stepsage_lambda.errors import EndpointBusy, NoCompletedTrainingJob

# Endpoint states in which SageMaker refuses another UpdateEndpoint: another run owns the endpoint.
BUSY_ENDPOINT_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
_LIST_PAGE = 100


class SageMakerApi:
    def __init__(self, sagemaker_client: Any | None = None) -> None:
        self._sm = sagemaker_client or default_client("sagemaker")

    @contextmanager
    def _endpoint_guard(self, endpoint_name: str) -> Iterator[None]:
        # ResourceInUse is SageMaker's typed signal that another operation holds the endpoint.
        try:
            yield
        except self._sm.exceptions.ResourceInUse as e:
            raise EndpointBusy(f"endpoint {endpoint_name} is in use by another operation") from e

    # Tuning and training jobs

    def best_training_job(self, tuning_job_name: str) -> dict[str, Any]:
        described = self._sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
        best = described.get("BestTrainingJob")
        if not best:
            counters = described.get("TrainingJobStatusCounters", {})
            raise NoCompletedTrainingJob(
                f"tuning job {tuning_job_name} ended {described.get('HyperParameterTuningJobStatus')} "
                f"without a best training job (counters {counters})"
            )
        return dict(best)

    def describe_training_job(self, training_job_name: str) -> dict[str, Any]:
        return dict(self._sm.describe_training_job(TrainingJobName=training_job_name))

    # Endpoints, their configs and models

    def find_endpoint(self, endpoint_name: str) -> dict[str, Any] | None:
        """DescribeEndpoint when the endpoint exists, else None.

        Existence comes from ListEndpoints, because DescribeEndpoint reports a missing endpoint only as a
        generic ValidationException, which cannot be told apart by type.
        """
        listed = self._sm.list_endpoints(NameContains=endpoint_name, MaxResults=_LIST_PAGE)
        if not any(e["EndpointName"] == endpoint_name for e in listed.get("Endpoints", [])):
            return None
        return dict(self._sm.describe_endpoint(EndpointName=endpoint_name))

    def describe_endpoint_config(self, config_name: str) -> dict[str, Any]:
        return dict(self._sm.describe_endpoint_config(EndpointConfigName=config_name))

    def describe_model(self, model_name: str) -> dict[str, Any]:
        return dict(self._sm.describe_model(ModelName=model_name))

    def model_exists(self, model_name: str) -> bool:
        listed = self._sm.list_models(NameContains=model_name, MaxResults=_LIST_PAGE)
        return any(m["ModelName"] == model_name for m in listed.get("Models", []))

    def endpoint_config_exists(self, config_name: str) -> bool:
        listed = self._sm.list_endpoint_configs(NameContains=config_name, MaxResults=_LIST_PAGE)
        return any(c["EndpointConfigName"] == config_name for c in listed.get("EndpointConfigs", []))

    def create_model(self, request: dict[str, Any]) -> None:
        if not self.model_exists(request["ModelName"]):
            self._sm.create_model(**request)

    def create_endpoint_config(self, request: dict[str, Any]) -> None:
        if not self.endpoint_config_exists(request["EndpointConfigName"]):
            self._sm.create_endpoint_config(**request)

    def create_endpoint(self, endpoint_name: str, config_name: str, tags: list[dict[str, str]]) -> None:
        with self._endpoint_guard(endpoint_name):
            self._sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name, Tags=tags)

    def switch_endpoint_config(self, endpoint_name: str, config_name: str) -> None:
        """UpdateEndpoint: SageMaker brings the new config up before it drains the old (blue/green)."""
        with self._endpoint_guard(endpoint_name):
            self._sm.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)

    def delete_endpoint(self, endpoint_name: str) -> None:
        with self._endpoint_guard(endpoint_name):
            self._sm.delete_endpoint(EndpointName=endpoint_name)

    def delete_endpoint_config(self, config_name: str) -> None:
        self._sm.delete_endpoint_config(EndpointConfigName=config_name)

    def delete_model(self, model_name: str) -> None:
        self._sm.delete_model(ModelName=model_name)

    # Tags

    def tags_of(self, resource_arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        kwargs: dict[str, Any] = {"ResourceArn": resource_arn, "MaxResults": _LIST_PAGE}
        while True:
            page = self._sm.list_tags(**kwargs)
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("NextToken"):
                return tags
            kwargs["NextToken"] = page["NextToken"]

    def add_tags(self, resource_arn: str, tags: dict[str, str]) -> None:
        self._sm.add_tags(ResourceArn=resource_arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def recent_models(self, limit: int) -> list[dict[str, Any]]:
        """The newest models first (ModelName, ModelArn, CreationTime), at most `limit`."""
        return self._recent("list_models", "Models", limit)

    def recent_endpoint_configs(self, limit: int) -> list[dict[str, Any]]:
        return self._recent("list_endpoint_configs", "EndpointConfigs", limit)

    def _recent(self, operation: str, key: str, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": _LIST_PAGE,
        }
        while len(found) < limit:
            page = getattr(self._sm, operation)(**kwargs)
            found.extend(page.get(key, []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return found[:limit]
