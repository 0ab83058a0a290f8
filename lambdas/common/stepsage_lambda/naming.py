"""Names for executions, jobs and endpoints that always fit SageMaker's and Step Functions' limits."""

from __future__ import annotations

import hashlib
import re

from contracts import datasets
from stepsage_lambda.errors import InvalidResourceName

# SageMaker's pattern for tuning jobs, endpoints, models and endpoint configs: alnum runs joined by hyphens.
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
TUNING_JOB_NAME_MAX = 32
TRAINING_JOB_NAME_MAX = 63
ENDPOINT_NAME_MAX = 63
MODEL_NAME_MAX = 63

# Suffixes the state machine appends with States.Format to $$.Execution.Name; a retry count has at most
# two digits because no Retry in the ASL allows more than 99 attempts.
TUNING_JOB_SUFFIX = "-h{}"
FINAL_JOB_SUFFIX = "-final-{}"
LONGEST_RETRY_COUNT = 99
EXECUTION_NAME_MAX = TUNING_JOB_NAME_MAX - len(TUNING_JOB_SUFFIX.format(LONGEST_RETRY_COUNT))

_HASH_CHARS = 12
STACK_TAG = "stepsage:stack"
DATASET_TAG = "stepsage:dataset"
EXECUTION_TAG = "stepsage:execution"
_ENDPOINT_PREFIX = "stepsage-"


def slug(text: str, max_length: int) -> str:
    """`text` reduced to SageMaker's name alphabet: alnum runs joined by hyphens, max_length at most."""
    reduced = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")
    return reduced[:max_length].rstrip("-")


def short_hash(*parts: str, length: int = _HASH_CHARS) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def execution_name(bucket: str, key: str, version_id: str | None, dataset_name: str) -> str:
    """A deterministic execution name for one uploaded object version, short enough for every job suffix.

    The hash covers bucket, key and version, so a redelivered event maps to the same execution; the
    dataset slug in front only makes the name readable.
    """
    digest = short_hash(bucket, key, version_id or "null")
    readable = slug(dataset_name.lower(), EXECUTION_NAME_MAX - len(digest) - 1)
    return f"{readable}-{digest}" if readable else digest


def tuning_job_name(execution: str, retry_count: int) -> str:
    """What the ASL's States.Format builds for RunHPO; kept here so tests can check it against limits."""
    return execution + TUNING_JOB_SUFFIX.format(retry_count)


def final_training_job_name(execution: str, retry_count: int) -> str:
    return execution + FINAL_JOB_SUFFIX.format(retry_count)


def dataset_name_from_key(key: str) -> str | None:
    """`datasets/<name>.zip` or `datasets/<name>/_READY` -> name as written; any other key -> None.

    A name outside contracts.datasets.NAME_RULE starts no run: the start Lambda publishes a notice that
    says which names work (and StageData still refuses one with DatasetValidationError)."""
    return datasets.name_from_key(key)


def endpoint_name(dataset_name: str) -> str:
    """`stepsage-<name>`; a name SageMaker cannot take as is gets a hash so two datasets never share one."""
    budget = ENDPOINT_NAME_MAX - len(_ENDPOINT_PREFIX)
    if len(dataset_name) <= budget and SAGEMAKER_NAME.match(dataset_name):
        return _ENDPOINT_PREFIX + dataset_name
    digest = short_hash(dataset_name, length=8)
    readable = slug(dataset_name, budget - len(digest) - 1)
    return f"{_ENDPOINT_PREFIX}{readable}-{digest}" if readable else _ENDPOINT_PREFIX + digest


def model_name(execution: str) -> str:
    return _bounded(f"{execution}-model")


def endpoint_config_name(execution: str) -> str:
    return _bounded(f"{execution}-config")


def _bounded(name: str) -> str:
    if len(name) > MODEL_NAME_MAX or not SAGEMAKER_NAME.match(name):
        raise InvalidResourceName(f"{name!r} is not a valid SageMaker resource name")
    return name


def tag_value(text: str) -> str:
    """`text` within SageMaker's tag value alphabet (letters, digits, spaces and _.:/=+-@), at most 256."""
    return re.sub(r"[^\w .:/=+\-@]", "-", text)[:256]


def stack_tags(stack_name: str, dataset_name: str, execution: str) -> list[dict[str, str]]:
    """The tags that mark a run-time resource as this stack's, for pruning and teardown."""
    return [
        {"Key": STACK_TAG, "Value": tag_value(stack_name)},
        {"Key": DATASET_TAG, "Value": tag_value(dataset_name)},
        {"Key": EXECUTION_TAG, "Value": tag_value(execution)},
    ]
