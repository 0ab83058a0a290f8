"""LaunchHPO's one job: ship the code bundle and return the tuning request the state machine submits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from code_bundle import build_sourcedir, bundle_key, metric_definitions, tuning_objective
from tuning_request import TuningSettings, build_tuning_request

from stepsage_lambda.s3_api import S3Api, uri
from stepsage_lambda.settings import TrainingSettings

DEFAULT_CODE_DIR = "/opt/sagemaker_code"


def ship_code(code_dir: Path, bucket: str, s3: S3Api) -> str:
    """Upload the content-hashed sourcedir.tar.gz unless that exact bundle is already there; its URI."""
    tarball = build_sourcedir(code_dir)
    key = bundle_key(tarball)
    s3.put_if_absent(bucket, key, tarball, "application/gzip")
    return uri(bucket, key)


def prepare_tuning(
    *, execution_name: str, dataset: Mapping[str, Any], role_arn: str, env: Mapping[str, str], s3: S3Api
) -> dict[str, Any]:
    settings = TrainingSettings.from_env(env)
    tuning = TuningSettings.from_env(env)
    code_dir = Path(env.get("SAGEMAKER_CODE_DIR") or DEFAULT_CODE_DIR)
    code_uri = ship_code(code_dir, settings.artifacts_bucket, s3)
    request = build_tuning_request(
        execution_name=execution_name,
        dataset=dataset,
        role_arn=role_arn,
        code_uri=code_uri,
        metric_definitions=metric_definitions(code_dir),
        objective=tuning_objective(code_dir),
        settings=settings,
        tuning=tuning,
    )
    return {"request": request, "code_uri": code_uri, "strategy": tuning.strategy}
