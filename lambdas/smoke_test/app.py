"""SmokeTest: held-out images against the new endpoint; rollback on failure, pruning on success."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from smoke_check import SmokeSettings, smoke_test

from stepsage_lambda.endpoint_services import EndpointServices
from stepsage_lambda.payloads import SmokeTestInput, SmokeTestPassed

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def settings() -> SmokeSettings:
    """Read once per cold start; a bad value fails the first invocation and names the variable."""
    return SmokeSettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SmokeTestInput)
def lambda_handler(event: SmokeTestInput, context: LambdaContext) -> dict[str, Any]:
    result = smoke_test(event, settings=settings(), services=EndpointServices.default())
    if isinstance(result, SmokeTestPassed):
        metrics.add_metric(name="SmokeTestAccuracy", unit=MetricUnit.Percent, value=100 * result.accuracy)
    logger.info("smoke test done", extra={"result": result.model_dump(mode="json")})
    return result.model_dump(mode="json")
