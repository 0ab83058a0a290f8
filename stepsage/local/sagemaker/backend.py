"""The SageMaker emulator's state and operations: one `handle(operation, params)` for the whole API."""

from __future__ import annotations

import copy
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepsage.local.errors import SageMakerError
from stepsage.local.sagemaker.context import EmulatorContext, Listener, now
from stepsage.local.sagemaker.endpoints import Endpoint
from stepsage.local.sagemaker.exceptions import (
    ResourceInUse,
    ResourceLimitExceeded,
    ResourceNotFound,
    RuntimeValidationError,
    ValidationError,
)
from stepsage.local.sagemaker.storage import S3Storage, S3TransferError
from stepsage.local.sagemaker.training import TrainingJob
from stepsage.local.sagemaker.tuning import TuningJob, sort_trials
from stepsage.local.sagemaker.validation import validate_request

# Local quotas, so a runaway client fails like an account at its limits instead of exhausting the machine.
MAX_ACTIVE_TRAINING_JOBS = 50
MAX_ACTIVE_TUNING_JOBS = 10
MAX_ENDPOINTS = 20
MAX_TAGS = 50

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")

OPERATIONS = frozenset(
    {
        "CreateTrainingJob",
        "DescribeTrainingJob",
        "StopTrainingJob",
        "ListTrainingJobs",
        "CreateHyperParameterTuningJob",
        "DescribeHyperParameterTuningJob",
        "StopHyperParameterTuningJob",
        "ListHyperParameterTuningJobs",
        "ListTrainingJobsForHyperParameterTuningJob",
        "CreateModel",
        "DescribeModel",
        "DeleteModel",
        "ListModels",
        "CreateEndpointConfig",
        "DescribeEndpointConfig",
        "DeleteEndpointConfig",
        "ListEndpointConfigs",
        "CreateEndpoint",
        "DescribeEndpoint",
        "DeleteEndpoint",
        "ListEndpoints",
        "UpdateEndpoint",
        "AddTags",
        "ListTags",
        "DeleteTags",
    }
)


def _paginate(
    items: list[dict[str, Any]], params: dict[str, Any], default_max: int = 10
) -> tuple[list[dict[str, Any]], str | None]:
    start = 0
    token = params.get("NextToken")
    if token:
        try:
            start = int(token)
        except ValueError as e:
            raise ValidationError(f"Invalid pagination token {token}") from e
    size = params.get("MaxResults") or default_max
    page = items[start : start + size]
    following = start + size
    return page, (str(following) if following < len(items) else None)


def _filter_and_sort(
    items: list[dict[str, Any]],
    params: dict[str, Any],
    *,
    name_key: str,
    status_key: str | None,
    default_sort: str = "CreationTime",
    default_order: str = "Descending",
) -> list[dict[str, Any]]:
    contains = params.get("NameContains")
    if contains:
        items = [i for i in items if contains.lower() in i[name_key].lower()]
    for key, op in (
        ("CreationTimeAfter", "gt"),
        ("CreationTimeBefore", "lt"),
        ("LastModifiedTimeAfter", "gt"),
        ("LastModifiedTimeBefore", "lt"),
    ):
        if params.get(key) is None:
            continue
        bound = _as_datetime(params[key])
        field = "CreationTime" if key.startswith("Creation") else "LastModifiedTime"
        items = [i for i in items if field in i and (i[field] > bound if op == "gt" else i[field] < bound)]
    if status_key and params.get("StatusEquals"):
        items = [i for i in items if i.get(status_key) == params["StatusEquals"]]
    sort_by = params.get("SortBy", default_sort)
    field = {"Name": name_key, "CreationTime": "CreationTime", "Status": status_key or name_key}[sort_by]
    return sorted(
        items, key=lambda i: i[field], reverse=params.get("SortOrder", default_order) == "Descending"
    )


def _as_datetime(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class SageMakerBackend:
    """Training and tuning jobs, models, endpoint configs and endpoints, as AWS SageMaker shapes them."""

    def __init__(
        self,
        *,
        s3_endpoint_url: str | None,
        work_dir: Path,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        cores: int = 2,
        python: str = sys.executable,
    ) -> None:
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.context = EmulatorContext(
            storage=S3Storage(s3_endpoint_url, region),
            work_dir=work_dir,
            region=region,
            account_id=account_id,
            cores=max(1, cores),
            python=python,
        )
        self._lock = threading.RLock()
        self.training_jobs: dict[str, TrainingJob] = {}
        self.tuning_jobs: dict[str, TuningJob] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.endpoint_configs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.tags: dict[str, list[dict[str, str]]] = {}

    # ---- entry points ---------------------------------------------------------------------------

    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate and run one SageMaker API call; returns the AWS response shape, datetimes unserialized."""
        validate_request(operation, params)
        if operation not in OPERATIONS:
            raise SageMakerError(
                "UnknownOperationException",
                f"The local SageMaker emulator does not implement {operation}",
                400,
            )
        method: Callable[[dict[str, Any]], dict[str, Any]] = getattr(
            self, "_" + _SNAKE.sub("_", operation).lower()
        )
        return method(copy.deepcopy(params))

    def invoke_endpoint(
        self, endpoint_name: str, body: bytes, content_type: str, accept: str
    ) -> tuple[int, bytes, str]:
        with self._lock:
            endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise RuntimeValidationError(
                f"Endpoint {endpoint_name} of account {self.context.account_id} not found."
            )
        return endpoint.invoke(body, content_type, accept)

    def add_listener(self, callback: Listener) -> None:
        """`callback(event)` for progress: job and endpoint status, epochs parsed from logs, trial results."""
        self.context.add_listener(callback)

    def logs(self, job_name: str) -> list[str]:
        with self._lock:
            job = self.training_jobs.get(job_name)
        if job is None:
            raise ValidationError("Requested resource not found.")
        return job.logs()

    def endpoint_logs(self, endpoint_name: str) -> list[str]:
        with self._lock:
            endpoint = self.endpoints.get(endpoint_name)
        return list(endpoint.log) if endpoint else []

    def shutdown(self, grace_seconds: float = 5.0) -> None:
        """Stop every job and server and kill every child process group; nothing outlives the emulator.

        Stopped jobs get `grace_seconds` to upload what they have, as SageMaker lets them; then S3 transfers
        still running (a job's channel download, say) are aborted, so no job thread outlives the shutdown."""
        with self._lock:
            tuning = list(self.tuning_jobs.values())
            training = list(self.training_jobs.values())
            endpoints = list(self.endpoints.values())
        for tuning_job in tuning:
            tuning_job.stop()
        for job in training:
            job.stop()
        for endpoint in endpoints:
            with endpoint._lock:
                endpoint.deleted = True
        self.context.processes.kill_all(grace_seconds=3.0)
        self._wait_for(training, tuning, grace_seconds)
        self.context.storage.close()
        self._wait_for(training, tuning, grace_seconds)

    @staticmethod
    def _wait_for(training: list[TrainingJob], tuning: list[TuningJob], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        waits: list[Callable[..., bool]] = [job.wait for job in training] + [job.wait for job in tuning]
        for wait in waits:
            wait(timeout=max(0.0, deadline - time.monotonic()))

    # ---- tags -----------------------------------------------------------------------------------

    def _set_tags(self, arn: str, tags: list[dict[str, str]] | None) -> None:
        if not tags:
            return
        with self._lock:
            current = {t["Key"]: t["Value"] for t in self.tags.get(arn, [])}
            current.update({t["Key"]: t.get("Value", "") for t in tags})
            if len(current) > MAX_TAGS:
                raise ResourceLimitExceeded(f"A resource can have at most {MAX_TAGS} tags.")
            self.tags[arn] = [{"Key": k, "Value": v} for k, v in current.items()]

    def _known_arns(self) -> set[str]:
        arns = {j.arn for j in self.training_jobs.values()} | {j.arn for j in self.tuning_jobs.values()}
        arns |= {m["ModelArn"] for m in self.models.values()}
        arns |= {c["EndpointConfigArn"] for c in self.endpoint_configs.values()}
        return arns | {e.arn for e in self.endpoints.values()}

    def _add_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if params["ResourceArn"] not in self._known_arns():
                raise ValidationError(f"Resource {params['ResourceArn']} does not exist.")
            self._set_tags(params["ResourceArn"], params["Tags"])
            return {"Tags": list(self.tags[params["ResourceArn"]])}

    def _list_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if params["ResourceArn"] not in self._known_arns():
                raise ValidationError(f"Resource {params['ResourceArn']} does not exist.")
            tags = list(self.tags.get(params["ResourceArn"], []))
        page, token = _paginate(tags, params, default_max=50)
        return {"Tags": page, **({"NextToken": token} if token else {})}

    def _delete_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if params["ResourceArn"] not in self._known_arns():
                raise ValidationError(f"Resource {params['ResourceArn']} does not exist.")
            drop = set(params["TagKeys"])
            self.tags[params["ResourceArn"]] = [
                t for t in self.tags.get(params["ResourceArn"], []) if t["Key"] not in drop
            ]
        return {}

    # ---- training jobs --------------------------------------------------------------------------

    def _new_training_job(self, request: dict[str, Any], **kwargs: Any) -> TrainingJob:
        with self._lock:
            name = request["TrainingJobName"]
            if name in self.training_jobs:
                arn = self.training_jobs[name].arn
                raise ResourceInUse(
                    "Training job names must be unique within an AWS account and region, and a training job "
                    f"with this name already exists ({arn})"
                )
            active = sum(1 for j in self.training_jobs.values() if not j.finished)
            if active >= MAX_ACTIVE_TRAINING_JOBS:
                raise ResourceLimitExceeded(
                    f"The limit of {MAX_ACTIVE_TRAINING_JOBS} active training jobs is reached."
                )
            job = TrainingJob(self.context, request, **kwargs)
            self.training_jobs[name] = job
            self._set_tags(job.arn, request.get("Tags"))
            return job

    def _create_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._new_training_job(params)
        job.start()
        return {"TrainingJobArn": job.arn}

    def _training_job(self, name: str) -> TrainingJob:
        with self._lock:
            job = self.training_jobs.get(name)
        if job is None:
            # SageMaker answers a missing training job with ValidationException, not ResourceNotFound.
            raise ValidationError("Requested resource not found.")
        return job

    def _describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._training_job(params["TrainingJobName"]).describe()

    def _stop_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._training_job(params["TrainingJobName"])
        if not job.stop():
            raise ValidationError(
                f"The training job {job.name} is in status {job.status} and cannot be stopped."
            )
        return {}

    def _list_training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            summaries = [job.summary() for job in self.training_jobs.values()]
        ordered = _filter_and_sort(
            summaries,
            params,
            name_key="TrainingJobName",
            status_key="TrainingJobStatus",
            default_order="Ascending",
        )
        page, token = _paginate(ordered, params)
        return {"TrainingJobSummaries": page, **({"NextToken": token} if token else {})}

    # ---- tuning jobs ----------------------------------------------------------------------------

    def _create_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            name = params["HyperParameterTuningJobName"]
            if name in self.tuning_jobs:
                raise ResourceInUse(
                    f"A hyperparameter tuning job with the name, {name}, already exists. "
                    "Choose a different name."
                )
            active = sum(1 for j in self.tuning_jobs.values() if j.status in ("InProgress", "Stopping"))
            if active >= MAX_ACTIVE_TUNING_JOBS:
                raise ResourceLimitExceeded(
                    f"The limit of {MAX_ACTIVE_TUNING_JOBS} active tuning jobs is reached."
                )
            tuning_job = TuningJob(self.context, params, self._new_training_job)
            self.tuning_jobs[name] = tuning_job
            self._set_tags(tuning_job.arn, params.get("Tags"))
        tuning_job.start()
        return {"HyperParameterTuningJobArn": tuning_job.arn}

    def _tuning_job(self, name: str) -> TuningJob:
        with self._lock:
            tuning_job = self.tuning_jobs.get(name)
        if tuning_job is None:
            raise ResourceNotFound(
                f"Amazon SageMaker can't find a tuning job called {name}. Type another name."
            )
        return tuning_job

    def _describe_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._tuning_job(params["HyperParameterTuningJobName"]).describe()

    def _stop_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        tuning_job = self._tuning_job(params["HyperParameterTuningJobName"])
        if tuning_job.status != "InProgress":
            raise ValidationError(
                f"The hyperparameter tuning job {tuning_job.name} is in status {tuning_job.status} "
                "and cannot be stopped."
            )
        tuning_job.stop()
        return {}

    def _list_hyper_parameter_tuning_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            summaries = [job.summary() for job in self.tuning_jobs.values()]
        ordered = _filter_and_sort(
            summaries,
            params,
            name_key="HyperParameterTuningJobName",
            status_key="HyperParameterTuningJobStatus",
            default_sort="Name",
            default_order="Ascending",
        )
        page, token = _paginate(ordered, params)
        return {"HyperParameterTuningJobSummaries": page, **({"NextToken": token} if token else {})}

    def _list_training_jobs_for_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        trials = self._tuning_job(params["HyperParameterTuningJobName"]).trial_summaries()
        if params.get("StatusEquals"):
            trials = [t for t in trials if t["TrainingJobStatus"] == params["StatusEquals"]]
        ordered = sort_trials(trials, params.get("SortBy", "Name"), params.get("SortOrder", "Ascending"))
        page, token = _paginate(ordered, params)
        return {"TrainingJobSummaries": page, **({"NextToken": token} if token else {})}

    # ---- models ---------------------------------------------------------------------------------

    def _create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelName"]
        arn = self.context.arn("model", name)
        with self._lock:
            if name in self.models:
                raise ValidationError(f'Cannot create already existing model "{arn}".')
        for container in (
            [params["PrimaryContainer"]] if "PrimaryContainer" in params else params["Containers"]
        ):
            url = container.get("ModelDataUrl")
            if url is None:
                raise ValidationError("The local emulator serves models from a ModelDataUrl (model.tar.gz).")
            try:
                found = self.context.storage.exists(url)
            except S3TransferError as e:
                raise ValidationError(str(e)) from e
            if not found:
                raise ValidationError(f"Could not find model data at {url}.")
        model = {**params, "ModelArn": arn, "CreationTime": now()}
        model.pop("Tags", None)
        with self._lock:
            if name in self.models:
                raise ValidationError(f'Cannot create already existing model "{arn}".')
            self.models[name] = model
            self._set_tags(arn, params.get("Tags"))
        return {"ModelArn": arn}

    def _model(self, name: str) -> dict[str, Any]:
        with self._lock:
            model = self.models.get(name)
        if model is None:
            raise ValidationError(f'Could not find model "{self.context.arn("model", name)}".')
        return model

    def _describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._model(params["ModelName"]))

    def _delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        model = self._model(params["ModelName"])
        with self._lock:
            self.models.pop(params["ModelName"], None)
            self.tags.pop(model["ModelArn"], None)
        return {}

    def _list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            summaries = [
                {k: m[k] for k in ("ModelName", "ModelArn", "CreationTime")} for m in self.models.values()
            ]
        ordered = _filter_and_sort(summaries, params, name_key="ModelName", status_key=None)
        page, token = _paginate(ordered, params)
        return {"Models": page, **({"NextToken": token} if token else {})}

    # ---- endpoint configs -----------------------------------------------------------------------

    def _create_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointConfigName"]
        arn = self.context.arn("endpoint-config", name)
        for variant in params["ProductionVariants"]:
            self._model(variant["ModelName"])
        config = {**params, "EndpointConfigArn": arn, "CreationTime": now()}
        config.pop("Tags", None)
        with self._lock:
            if name in self.endpoint_configs:
                raise ValidationError(f'Cannot create already existing endpoint configuration "{arn}".')
            self.endpoint_configs[name] = config
            self._set_tags(arn, params.get("Tags"))
        return {"EndpointConfigArn": arn}

    def _endpoint_config(self, name: str) -> dict[str, Any]:
        with self._lock:
            config = self.endpoint_configs.get(name)
        if config is None:
            raise ValidationError(
                f'Could not find endpoint configuration "{self.context.arn("endpoint-config", name)}".'
            )
        return config

    def _describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._endpoint_config(params["EndpointConfigName"]))

    def _delete_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        config = self._endpoint_config(params["EndpointConfigName"])
        with self._lock:
            self.endpoint_configs.pop(params["EndpointConfigName"], None)
            self.tags.pop(config["EndpointConfigArn"], None)
        return {}

    def _list_endpoint_configs(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            summaries = [
                {k: c[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")}
                for c in self.endpoint_configs.values()
            ]
        ordered = _filter_and_sort(summaries, params, name_key="EndpointConfigName", status_key=None)
        page, token = _paginate(ordered, params)
        return {"EndpointConfigs": page, **({"NextToken": token} if token else {})}

    # ---- endpoints ------------------------------------------------------------------------------

    def _primary_model(self, config: dict[str, Any]) -> dict[str, Any]:
        # Locally the first production variant takes all traffic.
        return self._model(config["ProductionVariants"][0]["ModelName"])

    def _create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        config = copy.deepcopy(self._endpoint_config(params["EndpointConfigName"]))
        model = copy.deepcopy(self._primary_model(config))
        with self._lock:
            if name in self.endpoints:
                raise ValidationError(
                    f'Cannot create already existing endpoint "{self.context.arn("endpoint", name)}".'
                )
            if len(self.endpoints) >= MAX_ENDPOINTS:
                raise ResourceLimitExceeded(
                    f"The account-level service limit of {MAX_ENDPOINTS} endpoints is reached."
                )
            endpoint = Endpoint(self.context, name, config, params.get("Tags") or [])
            self.endpoints[name] = endpoint
            self._set_tags(endpoint.arn, params.get("Tags"))
        self.context.emit("EndpointStatus", endpoint=name, status="Creating")
        threading.Thread(
            target=endpoint.deploy,
            args=(config, model),
            kwargs={"updating": False},
            name=f"endpoint-{name}",
            daemon=True,
        ).start()
        return {"EndpointArn": endpoint.arn}

    def _endpoint(self, name: str) -> Endpoint:
        with self._lock:
            endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(f'Could not find endpoint "{self.context.arn("endpoint", name)}".')
        return endpoint

    def _describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._endpoint(params["EndpointName"]).describe()

    def _update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(params["EndpointName"])
        config = copy.deepcopy(self._endpoint_config(params["EndpointConfigName"]))
        model = copy.deepcopy(self._primary_model(config))
        with endpoint._lock:
            if endpoint.status != "InService":
                raise ValidationError(
                    f'Cannot update in-progress endpoint "{endpoint.arn}".'
                    if endpoint.status in ("Creating", "Updating")
                    else f"Endpoint {endpoint.name} is in status {endpoint.status} and cannot be updated."
                )
            # Claimed under the lock, so two concurrent updates cannot both start.
            endpoint.status = "Updating"
            endpoint.last_modified_time = now()
        self.context.emit("EndpointStatus", endpoint=endpoint.name, status="Updating")
        threading.Thread(
            target=endpoint.deploy,
            args=(config, model),
            kwargs={"updating": True},
            name=f"endpoint-update-{endpoint.name}",
            daemon=True,
        ).start()
        return {"EndpointArn": endpoint.arn}

    def _delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(params["EndpointName"])
        with self._lock:
            self.endpoints.pop(endpoint.name, None)
            self.tags.pop(endpoint.arn, None)
        endpoint.set_status("Deleting")
        threading.Thread(
            target=endpoint.shutdown, name=f"endpoint-delete-{endpoint.name}", daemon=True
        ).start()
        return {}

    def _list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            summaries = [e.summary() for e in self.endpoints.values()]
        ordered = _filter_and_sort(summaries, params, name_key="EndpointName", status_key="EndpointStatus")
        page, token = _paginate(ordered, params)
        return {"Endpoints": page, **({"NextToken": token} if token else {})}
