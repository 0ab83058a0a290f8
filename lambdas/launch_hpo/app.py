"""LaunchHPO: ship the training code and build the CreateHyperParameterTuningJob request."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from launch import LaunchSettings, prepare_tuning

from stepsage_lambda.payloads import LaunchHpoInput
from stepsage_lambda.s3_api import S3Api

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def settings() -> LaunchSettings:
    """Read once per cold start; a bad value fails the first invocation and names the variable."""
    return LaunchSettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=LaunchHpoInput)
def lambda_handler(event: LaunchHpoInput, context: LambdaContext) -> dict[str, Any]:
    prepared = prepare_tuning(event, settings=settings(), s3=S3Api())
    limits = prepared.request.HyperParameterTuningJobConfig["ResourceLimits"]
    metrics.add_metric(
        name="PlannedTrials", unit=MetricUnit.Count, value=limits.get("MaxNumberOfTrainingJobs", 0)
    )
    logger.info("tuning request ready", extra={"code_uri": prepared.code_uri, "strategy": prepared.strategy})
    return prepared.model_dump(mode="json")
