"""From an uploaded dataset object to one uniquely named pipeline execution."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from stepsage_lambda.naming import dataset_name_from_key, execution_name
from stepsage_lambda.settings import declared, text
from stepsage_lambda.stepfunctions_api import StepFunctionsApi


@dataclass(frozen=True)
class TriggerSettings:
    """StartPipelineFunction's environment, read once per cold start by its handler."""

    state_machine_arn: str

    ENV_VARS: ClassVar[tuple[str, ...]] = ("STATE_MACHINE_ARN",)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TriggerSettings:
        return cls(state_machine_arn=text(declared(env, cls), "STATE_MACHINE_ARN"))


@dataclass(frozen=True)
class PipelineStart:
    execution_name: str
    payload: dict[str, Any]


def plan_start(bucket: str, key: str, version_id: str | None) -> PipelineStart | None:
    """The execution an upload starts, or None for keys that are not a dataset (`datasets/<name>.zip`
    or the `datasets/<name>/_READY` marker that closes a folder upload)."""
    dataset = dataset_name_from_key(key)
    if dataset is None:
        return None
    name = execution_name(bucket, key, version_id, dataset)
    payload = {"bucket": bucket, "key": key, "version_id": version_id, "dataset_name": dataset}
    return PipelineStart(execution_name=name, payload=payload)


def start_for_upload(
    bucket: str, key: str, version_id: str | None, state_machine_arn: str, sfn: StepFunctionsApi
) -> dict[str, Any]:
    """Start (or recognise as already started) the execution for one upload; the handler's whole job."""
    plan = plan_start(bucket, key, version_id)
    if plan is None:
        return {"status": "ignored", "key": key}
    started = sfn.start_once(state_machine_arn, plan.execution_name, plan.payload)
    return {
        "status": "duplicate" if started.duplicate else "started",
        "execution_name": plan.execution_name,
        "execution_arn": started.execution_arn,
        **plan.payload,
    }
