"""StageData: validate an uploaded image dataset and stage train/valid/test channels with a manifest."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from dataset_store import DatasetStore
from stage import StagingSettings, stage_dataset
from stage_request import StageDataEvent

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "stepsage"))


@cache
def settings() -> StagingSettings:
    """Read once per cold start; a bad value fails the first invocation and names the variable."""
    return StagingSettings.from_env(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser
def lambda_handler(event: StageDataEvent, context: LambdaContext) -> dict[str, Any]:
    result = stage_dataset(
        event, settings(), DatasetStore(), seconds_left=lambda: context.get_remaining_time_in_millis() / 1000
    )
    metrics.add_metric(name="ImagesStaged", unit=MetricUnit.Count, value=result.images)
    metrics.add_metric(name="BytesStaged", unit=MetricUnit.Bytes, value=result.staged_bytes)
    metrics.add_metric(name="RangedGets", unit=MetricUnit.Count, value=result.ranged_requests)
    metrics.add_metric(name="EntriesIgnored", unit=MetricUnit.Count, value=result.ignored)
    logger.info("staged", extra={"counts": result.output["counts"], "ranged_bytes": result.ranged_bytes})
    return result.output
