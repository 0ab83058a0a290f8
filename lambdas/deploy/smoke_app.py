"""SmokeTest: held-out images against the new endpoint; rollback on failure, pruning on success."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from deployer import Services
from smoke_test import smoke_test

from stepsage_lambda.runtime_api import RuntimeApi
from stepsage_lambda.s3_api import S3Api
from stepsage_lambda.sagemaker_api import SageMakerApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class SmokeTestEvent(BaseModel):
    deployment: dict[str, Any]
    dataset: dict[str, Any]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SmokeTestEvent)
def lambda_handler(event: SmokeTestEvent, context: LambdaContext) -> dict[str, Any]:
    result = smoke_test(
        deployment=event.deployment,
        dataset=event.dataset,
        env=os.environ,
        services=Services(SageMakerApi(), S3Api(), RuntimeApi()),
    )
    if "accuracy" in result:
        metrics.add_metric(name="SmokeTestAccuracy", unit=MetricUnit.Percent, value=100 * result["accuracy"])
    logger.info("smoke test done", extra={"result": result})
    return result
