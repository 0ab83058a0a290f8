"""Names for executions, jobs and endpoints that always fit SageMaker's and Step Functions' limits."""

from __future__ import annotations

import hashlib
import re

from contracts import datasets
from stepsage_lambda.errors import InvalidResourceName

# SageMaker's pattern for tuning jobs, endpoints, models and endpoint configs: alnum runs joined by hyphens.
# \Z, not $: `$` also matches before a final newline, and "name\n" is no name SageMaker takes.
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*\Z")
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
_ENDPOINT_HASH_CHARS = 8
# A dataset name that can end a plain `<stack>-<dataset>` endpoint name: no hyphen, and not a hash look-alike.
_PLAIN_DATASET = re.compile(r"^[a-zA-Z0-9]+$")
_LOOKS_LIKE_HASH = re.compile(rf"^[0-9a-f]{{{_ENDPOINT_HASH_CHARS}}}$")


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


def endpoint_name(stack_name: str, dataset_name: str) -> str:
    """The endpoint of one dataset in one stack: distinct (stack, dataset) pairs never share a name.

    `<stack>-<dataset>` when the dataset name is letters and digits only (then the last hyphen splits the
    pair unambiguously) and the whole fits SageMaker's pattern and length. Otherwise
    `<stack>-<dataset>-<hash of both>`: the dataset is kept whole where it fits, the stack name is shortened
    to what is left, and the hash tells apart pairs such as (`a`, `b-c`) and (`a-b`, `c`).
    """
    plain = f"{stack_name}-{dataset_name}"
    if (
        _PLAIN_DATASET.match(dataset_name)
        and not _LOOKS_LIKE_HASH.match(dataset_name)
        and len(plain) <= ENDPOINT_NAME_MAX
        and SAGEMAKER_NAME.match(plain)
    ):
        return plain
    digest = short_hash(stack_name, dataset_name, length=_ENDPOINT_HASH_CHARS)
    budget = ENDPOINT_NAME_MAX - len(digest) - 1
    dataset_part = _readable(dataset_name, budget)
    stack_part = _readable(stack_name, budget - len(dataset_part) - 1)
    readable = "-".join(part for part in (stack_part, dataset_part) if part)
    return f"{readable}-{digest}" if readable else digest


def _readable(text: str, max_length: int) -> str:
    """`text` as written when SageMaker takes it, else its slug; cut to max_length, never ending in '-'."""
    kept = text if SAGEMAKER_NAME.match(text) else slug(text, max(max_length, 0))
    return kept[: max(max_length, 0)].rstrip("-")


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
    """The tags that mark a run-time resource as this stack's: pruning, teardown and the IAM conditions
    (template.yaml lets a stack's roles touch only resources whose `stepsage:stack` is the stack's name)."""
    return [
        {"Key": STACK_TAG, "Value": tag_value(stack_name)},
        {"Key": DATASET_TAG, "Value": tag_value(dataset_name)},
        {"Key": EXECUTION_TAG, "Value": tag_value(execution)},
    ]
