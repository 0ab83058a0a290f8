"""Deploy: champion/challenger on the held-out split, then a new model and config on the endpoint."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from deployer import DeploySettings, deploy

from stepsage_lambda.endpoint_services import EndpointServices
from stepsage_lambda.payloads import DeployInput

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def settings() -> DeploySettings:
    """Read once per cold start; a bad value fails the first invocation and names the variable."""
    return DeploySettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=DeployInput)
def lambda_handler(event: DeployInput, context: LambdaContext) -> dict[str, Any]:
    result = deploy(event, settings=settings(), services=EndpointServices.default())
    metrics.add_metric(name="Deployed" if result.deployed else "ChampionKept", unit=MetricUnit.Count, value=1)
    logger.info("deploy decided", extra={"result": result.model_dump(mode="json")})
    return result.model_dump(mode="json")
