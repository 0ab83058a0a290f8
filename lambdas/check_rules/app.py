"""CheckRules: one verdict from the embedded or managed rules, and the deploy gate's answer."""

from __future__ import annotations

import os
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from rules_check import check_rules

from stepsage_lambda.s3_api import S3Api
from stepsage_lambda.sagemaker_api import SageMakerApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class CheckRulesEvent(BaseModel):
    training_job_name: str
    debugger_mode: Literal["embedded", "managed", "off"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=CheckRulesEvent)
def lambda_handler(event: CheckRulesEvent, context: LambdaContext) -> dict[str, Any]:
    result = check_rules(
        training_job_name=event.training_job_name,
        debugger_mode=event.debugger_mode,
        gate_name=os.environ.get("DEPLOY_GATE", "rules"),
        sagemaker=SageMakerApi(),
        s3=S3Api(),
    )
    metrics.add_metric(name=f"Rules{result['verdict']}", unit=MetricUnit.Count, value=1)
    logger.info("rules checked", extra={"result": result})
    return result
