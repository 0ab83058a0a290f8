"""Helpers for the pipeline Lambdas' integration tests: events, flat modules, stubbed clients, tarballs."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber

_UNIT = Path(__file__).resolve().parents[1] / "unit"
if str(_UNIT) not in sys.path:
    sys.path.insert(0, str(_UNIT))

from events_fixture import FakeLambdaContext, load_event, load_lambda_module  # noqa: E402

from stepsage.local.sagemaker.validation import validate_request  # noqa: E402

__all__ = [
    "FakeLambdaContext",
    "load_event",
    "load_lambda_module",
    "streaming",
    "stubbed",
    "tarball",
    "validate_request",
]

REGION = "us-east-1"


def stubbed(service: str) -> tuple[Any, Stubber]:
    """A real botocore client for `service` and its Stubber (activated), so requests are checked by shape."""
    client = boto3.client(  # type: ignore[call-overload]
        service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def streaming(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
