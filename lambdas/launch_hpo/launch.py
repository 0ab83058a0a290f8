"""LaunchHPO's one job: ship the code bundle and return the tuning request the state machine submits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from code_bundle import build_sourcedir, bundle_key, metric_definitions, tuning_objective
from tuning_request import TuningSettings, build_tuning_request

from stepsage_lambda.payloads import LaunchHpoInput, TuningJobRequest, TuningPlan
from stepsage_lambda.s3_api import S3Api, uri
from stepsage_lambda.settings import TrainingSettings, declared

DEFAULT_CODE_DIR = "/opt/sagemaker_code"


@dataclass(frozen=True)
class LaunchSettings:
    """LaunchHpoFunction's environment, read once per cold start by its handler."""

    training: TrainingSettings
    tuning: TuningSettings
    # Where the SageMakerCodeLayer puts training_code/ and inference_code/.
    code_dir: Path

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        *TrainingSettings.ENV_VARS,
        *TuningSettings.ENV_VARS,
        "SAGEMAKER_CODE_DIR",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LaunchSettings:
        env = declared(env, cls)
        return cls(
            training=TrainingSettings.from_env(env),
            tuning=TuningSettings.from_env(env),
            code_dir=Path(env.get("SAGEMAKER_CODE_DIR") or DEFAULT_CODE_DIR),
        )


def ship_code(code_dir: Path, bucket: str, s3: S3Api) -> str:
    """Upload the content-hashed sourcedir.tar.gz unless the key already holds these exact bytes; its URI.

    The key's hash alone proves nothing about what the object holds now, so the object is hashed too.
    """
    tarball = build_sourcedir(code_dir)
    key = bundle_key(tarball)
    s3.put_unless_identical(bucket, key, tarball, "application/gzip")
    return uri(bucket, key)


def prepare_tuning(event: LaunchHpoInput, *, settings: LaunchSettings, s3: S3Api) -> TuningPlan:
    code_dir = settings.code_dir
    code_uri = ship_code(code_dir, settings.training.artifacts_bucket, s3)
    request = build_tuning_request(
        execution_name=event.execution_name,
        dataset=event.dataset,
        role_arn=event.role_arn,
        code_uri=code_uri,
        metric_definitions=metric_definitions(code_dir),
        objective=tuning_objective(code_dir),
        settings=settings.training,
        tuning=settings.tuning,
    )
    return TuningPlan(
        request=TuningJobRequest.model_validate(request),
        code_uri=code_uri,
        strategy=settings.tuning.strategy,  # type: ignore[arg-type]
    )
