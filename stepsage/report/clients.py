"""boto3 clients for the report: the same APIs on AWS and locally, with only the endpoint changed."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# service name ("s3", "sagemaker", ...) -> a boto3 client for it
ClientFactory = Callable[[str], Any]


def aws_clients(endpoint_url: str | None = None, region: str | None = None) -> ClientFactory:
    """A cached factory; without `endpoint_url`, boto3's own AWS_ENDPOINT_URL[_<SERVICE>] settings apply."""
    import boto3
    from botocore.config import Config

    session = boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    config = Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=120)
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            options: dict[str, Any] = {"config": config}
            if endpoint_url:
                options["endpoint_url"] = endpoint_url
            if session.region_name is None:
                options["region_name"] = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
            made[service] = session.client(service, **options)  # type: ignore[call-overload]
        return made[service]

    return client
