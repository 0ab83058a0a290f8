"""CheckRules: one verdict from the embedded or managed rules, and the deploy gate's answer."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from rules_check import RulesSettings, check_rules

from stepsage_lambda.payloads import CheckRulesInput
from stepsage_lambda.s3_api import S3Api
from stepsage_lambda.sagemaker_api import SageMakerApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def settings() -> RulesSettings:
    """Read once per cold start; a bad value fails the first invocation and names the variable."""
    return RulesSettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=CheckRulesInput)
def lambda_handler(event: CheckRulesInput, context: LambdaContext) -> dict[str, Any]:
    result = check_rules(
        training_job_name=event.training_job_name,
        debugger_mode=event.debugger_mode,
        gate_name=settings().gate,
        sagemaker=SageMakerApi(),
        s3=S3Api(),
    ).model_dump(mode="json")
    metrics.add_metric(name=f"Rules{result['verdict']}", unit=MetricUnit.Count, value=1)
    logger.info("rules checked", extra={"result": result})
    return result
