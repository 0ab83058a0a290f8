"""SelectBest: the tuning job's best trial -> the final training job's request."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from selection import select_best

from stepsage_lambda.sagemaker_api import SageMakerApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class SelectBestEvent(BaseModel):
    tuning_job_name: str
    execution_name: str
    dataset: dict[str, Any]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SelectBestEvent)
def lambda_handler(event: SelectBestEvent, context: LambdaContext) -> dict[str, Any]:
    selected = select_best(
        tuning_job_name=event.tuning_job_name,
        execution_name=event.execution_name,
        dataset=event.dataset,
        env=os.environ,
        sagemaker=SageMakerApi(),
    )
    objective = selected["best"]["objective"]
    if objective["value"] is not None:
        metrics.add_metric(name="BestObjective", unit=MetricUnit.NoUnit, value=float(objective["value"]))
    logger.info("best trial selected", extra={"best": selected["best"]})
    return selected
