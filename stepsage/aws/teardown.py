"""Remove what `sam delete` cannot: the stack's run-time SageMaker resources and its buckets' contents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from stepsage.user_errors import UserError

# The tag the deploy Lambda puts on every model, endpoint config and endpoint (stepsage_lambda.naming).
STACK_TAG = "stepsage:stack"
BUCKET_LOGICAL_IDS = ("DataBucket", "ArtifactsBucket")
STATE_MACHINE_LOGICAL_ID = "PipelineStateMachine"
# DeleteObjects takes at most 1000 keys per call.
DELETE_BATCH = 1000


class TeardownError(Exception):
    """Teardown could not finish; what it did so far stays done, and running it again continues."""


class StackNotFoundError(TeardownError, UserError):
    """No CloudFormation stack by that name in this account and region."""


@dataclass
class TeardownReport:
    stack: str
    dry_run: bool
    stopped_executions: list[str] = field(default_factory=list)
    deleted_endpoints: list[str] = field(default_factory=list)
    deleted_endpoint_configs: list[str] = field(default_factory=list)
    deleted_models: list[str] = field(default_factory=list)
    emptied_buckets: dict[str, int] = field(default_factory=dict)
    aborted_uploads: int = 0
    stack_deleted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    stepfunctions: Any
    sagemaker: Any
    s3: Any

    @classmethod
    def from_session(cls, session: Any) -> Clients:
        return cls(
            cloudformation=session.client("cloudformation"),
            stepfunctions=session.client("stepfunctions"),
            sagemaker=session.client("sagemaker"),
            s3=session.client("s3"),
        )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def stack_resources(cloudformation: Any, stack: str) -> dict[str, str]:
    """Logical id -> physical id of the stack's resources."""
    resources: dict[str, str] = {}
    try:
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
            for summary in page["StackResourceSummaries"]:
                if summary.get("PhysicalResourceId"):
                    resources[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
    except ClientError as e:
        # CloudFormation reports a missing stack as ValidationError; nothing else here raises that code.
        if _error_code(e) == "ValidationError":
            raise StackNotFoundError(f"stack {stack!r} does not exist in this account and region") from e
        raise
    return resources


def stop_running_executions(stepfunctions: Any, state_machine_arn: str, dry_run: bool) -> list[str]:
    """Stop runs in flight, so none creates an endpoint after teardown; .sync tasks stop their jobs too."""
    stopped: list[str] = []
    paginator = stepfunctions.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            if not dry_run:
                stepfunctions.stop_execution(
                    executionArn=execution["executionArn"],
                    error="StackTeardown",
                    cause="stepsage aws teardown stopped this execution",
                )
            stopped.append(execution["executionArn"])
    return stopped


def _tags(sagemaker: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = sagemaker.list_tags(**kwargs)
        tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def _listed(sagemaker: Any, operation: str, items_key: str) -> Iterator[dict[str, Any]]:
    for page in sagemaker.get_paginator(operation).paginate():
        yield from page[items_key]


def stack_tagged(
    sagemaker: Any, stack: str, operation: str, items_key: str, arn_key: str, name_key: str
) -> list[str]:
    """Names of the resources that `operation` lists and that carry this stack's tag."""
    return [
        item[name_key]
        for item in _listed(sagemaker, operation, items_key)
        if _tags(sagemaker, item[arn_key]).get(STACK_TAG) == stack
    ]


def delete_sagemaker_resources(sagemaker: Any, stack: str, dry_run: bool, report: TeardownReport) -> None:
    """Endpoints first (they bill by the hour and use configs), then endpoint configs, then models."""
    kinds: list[tuple[str, str, str, str, list[str], Callable[[str], Any]]] = [
        (
            "list_endpoints",
            "Endpoints",
            "EndpointArn",
            "EndpointName",
            report.deleted_endpoints,
            lambda name: sagemaker.delete_endpoint(EndpointName=name),
        ),
        (
            "list_endpoint_configs",
            "EndpointConfigs",
            "EndpointConfigArn",
            "EndpointConfigName",
            report.deleted_endpoint_configs,
            lambda name: sagemaker.delete_endpoint_config(EndpointConfigName=name),
        ),
        (
            "list_models",
            "Models",
            "ModelArn",
            "ModelName",
            report.deleted_models,
            lambda name: sagemaker.delete_model(ModelName=name),
        ),
    ]
    for operation, items_key, arn_key, name_key, deleted, delete in kinds:
        for name in stack_tagged(sagemaker, stack, operation, items_key, arn_key, name_key):
            if not dry_run:
                delete(name)
            deleted.append(name)


def empty_bucket(s3: Any, bucket: str, dry_run: bool) -> tuple[int, int]:
    """Delete every object version and delete marker, and abort unfinished uploads.

    Returns (versions and markers deleted, uploads aborted). A bucket that is already gone counts as empty.
    """
    try:
        removed = 0
        batch: list[dict[str, str]] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                batch.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
                if len(batch) == DELETE_BATCH:
                    removed += _delete_batch(s3, bucket, batch, dry_run)
                    batch = []
        if batch:
            removed += _delete_batch(s3, bucket, batch, dry_run)
        aborted = 0
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                if not dry_run:
                    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
    except ClientError as e:
        if _error_code(e) == "NoSuchBucket":
            return 0, 0
        raise
    return removed, aborted


def _delete_batch(s3: Any, bucket: str, batch: list[dict[str, str]], dry_run: bool) -> int:
    if dry_run:
        return len(batch)
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    errors = response.get("Errors", [])
    if errors:
        first = errors[0]
        raise TeardownError(
            f"{len(errors)} object versions in {bucket} were not deleted, e.g. {first.get('Key')}: "
            f"{first.get('Code')} {first.get('Message')}"
        )
    return len(batch)


def teardown(
    stack: str, clients: Clients, dry_run: bool = False, delete_stack: bool = False
) -> TeardownReport:
    """Stop runs, delete the stack's tagged SageMaker resources, empty both buckets, maybe delete it."""
    report = TeardownReport(stack=stack, dry_run=dry_run)
    resources = stack_resources(clients.cloudformation, stack)
    state_machine_arn = resources.get(STATE_MACHINE_LOGICAL_ID)
    if state_machine_arn:
        report.stopped_executions = stop_running_executions(clients.stepfunctions, state_machine_arn, dry_run)
    delete_sagemaker_resources(clients.sagemaker, stack, dry_run, report)
    for logical_id in BUCKET_LOGICAL_IDS:
        bucket = resources.get(logical_id)
        if bucket:
            removed, aborted = empty_bucket(clients.s3, bucket, dry_run)
            report.emptied_buckets[bucket] = removed
            report.aborted_uploads += aborted
    if delete_stack and not dry_run:
        clients.cloudformation.delete_stack(StackName=stack)
        clients.cloudformation.get_waiter("stack_delete_complete").wait(StackName=stack)
        report.stack_deleted = True
    return report
