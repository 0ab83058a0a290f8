"""The one factory for AWS clients: endpoints and region come from the environment, never from code paths."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=70)


def _endpoint_for(service: str) -> str | None:
    # AWS_ENDPOINT_URL_<SERVICE> wins over AWS_ENDPOINT_URL, as in the AWS SDKs' own convention.
    specific = os.environ.get("AWS_ENDPOINT_URL_" + service.upper().replace("-", "_"))
    return specific or os.environ.get("AWS_ENDPOINT_URL") or None


@cache
def client(service: str) -> Any:
    """A cached boto3 client for `service`, honouring endpoint variables (the local cloud sets them)."""
    # The service name is a runtime string, so boto3-stubs' per-service overloads cannot apply.
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=_endpoint_for(service),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=_RETRIES,
    )
