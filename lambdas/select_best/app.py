"""SelectBest: the tuning job's best trial -> the final training job's request."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from selection import SelectionSettings, select_best

from stepsage_lambda.payloads import SelectBestInput
from stepsage_lambda.sagemaker_api import SageMakerApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def settings() -> SelectionSettings:
    """Read once per cold start; a bad value fails the first invocation and names the variable."""
    return SelectionSettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SelectBestInput)
def lambda_handler(event: SelectBestInput, context: LambdaContext) -> dict[str, Any]:
    selected = select_best(event, settings=settings(), sagemaker=SageMakerApi())
    objective = selected.best.objective
    if objective.value is not None:
        metrics.add_metric(name="BestObjective", unit=MetricUnit.NoUnit, value=objective.value)
    logger.info("best trial selected", extra={"best": selected.best.model_dump(mode="json")})
    return selected.model_dump(mode="json")
