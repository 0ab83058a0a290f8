"""LaunchHPO: ship the training code and build the CreateHyperParameterTuningJob request."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from launch import prepare_tuning

from stepsage_lambda.s3_api import S3Api

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class LaunchHpoEvent(BaseModel):
    execution_name: str
    role_arn: str
    dataset: dict[str, Any]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=LaunchHpoEvent)
def lambda_handler(event: LaunchHpoEvent, context: LambdaContext) -> dict[str, Any]:
    prepared = prepare_tuning(
        execution_name=event.execution_name,
        dataset=event.dataset,
        role_arn=event.role_arn,
        env=os.environ,
        s3=S3Api(),
    )
    limits = prepared["request"]["HyperParameterTuningJobConfig"]["ResourceLimits"]
    metrics.add_metric(
        name="PlannedTrials", unit=MetricUnit.Count, value=limits.get("MaxNumberOfTrainingJobs", 0)
    )
    logger.info(
        "tuning request ready", extra={"code_uri": prepared["code_uri"], "strategy": prepared["strategy"]}
    )
    return prepared
