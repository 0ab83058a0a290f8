"""Deploy: champion/challenger on the held-out split, then a new model and config on the endpoint."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from deployer import Services, deploy

from stepsage_lambda.runtime_api import RuntimeApi
from stepsage_lambda.s3_api import S3Api
from stepsage_lambda.sagemaker_api import SageMakerApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class DeployEvent(BaseModel):
    execution_name: str
    role_arn: str
    model_artifacts: str
    dataset: dict[str, Any]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=DeployEvent)
def lambda_handler(event: DeployEvent, context: LambdaContext) -> dict[str, Any]:
    result = deploy(
        execution_name=event.execution_name,
        dataset=event.dataset,
        model_artifacts=event.model_artifacts,
        role_arn=event.role_arn,
        env=os.environ,
        services=Services(SageMakerApi(), S3Api(), RuntimeApi()),
    )
    metrics.add_metric(
        name="Deployed" if result["deployed"] else "ChampionKept", unit=MetricUnit.Count, value=1
    )
    logger.info("deploy decided", extra={"result": result})
    return result
