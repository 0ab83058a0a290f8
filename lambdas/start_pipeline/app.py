"""EventBridge "Object Created" on the data bucket -> one execution per dataset upload, or a notice."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from trigger import TriggerSettings, start_for_upload

from stepsage_lambda.notices_api import NoticesApi
from stepsage_lambda.stepfunctions_api import StepFunctionsApi

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def settings() -> TriggerSettings:
    """Read once per cold start; a missing value fails the first invocation and names the variable."""
    return TriggerSettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    detail = event.detail
    outcome = start_for_upload(
        detail.bucket.name,
        detail.object.key,
        detail.object.version_id,
        settings(),
        StepFunctionsApi(),
        NoticesApi(),
    )
    logger.info("upload handled", extra={"outcome": outcome})
    metrics.add_metric(name=f"Executions{outcome['status'].title()}", unit=MetricUnit.Count, value=1)
    return outcome
