"""Endpoints in the local SageMaker emulator: real model servers, ModelError, and swaps that drop nothing."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import conftest_sagemaker
import pytest
from conftest_sagemaker import (
    BUCKET,
    ROLE_ARN,
    s3_client,
    tarball,
    wait_for,
)

from stepsage.local.errors import SageMakerError
from stepsage.local.sagemaker.exceptions import ModelError

pytestmark = pytest.mark.integration

# Fixtures shared through the helper module.
s3_endpoint = conftest_sagemaker.s3_endpoint
backend = conftest_sagemaker.backend

# The serving contract's four handlers, without torch, so a swap test runs in seconds.
FAKE_INFERENCE = """
import json, os

class UnsupportedContentType(Exception):
    status_code = 415

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model_config.json")) as f:
        return json.load(f)

def input_fn(body, content_type):
    if content_type != "application/json":
        raise UnsupportedContentType(f"unsupported content type {content_type}")
    return json.loads(body)

def predict_fn(data, model):
    return {"version": model["version"], "echo": data}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def _deploy_model(backend: Any, endpoint: str, version: int) -> str:
    key = f"models/v{version}/model.tar.gz"
    body = tarball(
        {"model_config.json": json.dumps({"version": version}), "code/inference.py": FAKE_INFERENCE}
    )
    s3_client(endpoint).put_object(Bucket=BUCKET, Key=key, Body=body)
    name = f"model-v{version}"
    backend.handle(
        "CreateModel",
        {
            "ModelName": name,
            "ExecutionRoleArn": ROLE_ARN,
            "PrimaryContainer": {"Image": "local/inference:latest", "ModelDataUrl": f"s3://{BUCKET}/{key}"},
        },
    )
    backend.handle(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": f"config-v{version}",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                }
            ],
        },
    )
    return f"config-v{version}"


def _status(backend: Any, name: str) -> str:
    return str(backend.handle("DescribeEndpoint", {"EndpointName": name})["EndpointStatus"])


def _invoke(backend: Any, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    status, body, content_type = backend.invoke_endpoint(
        name, json.dumps(payload).encode(), "application/json", "application/json"
    )
    assert (status, content_type) == (200, "application/json")
    return dict(json.loads(body))


def test_endpoint_serves_maps_model_errors_and_swaps_without_dropping(backend: Any, s3_endpoint: str) -> None:
    first = _deploy_model(backend, s3_endpoint, 1)
    backend.handle("CreateEndpoint", {"EndpointName": "digits", "EndpointConfigName": first})
    assert _status(backend, "digits") == "Creating"
    wait_for(lambda: _status(backend, "digits") != "Creating", timeout=120)
    assert _status(backend, "digits") == "InService"
    assert _invoke(backend, "digits", {"n": 1}) == {"version": 1, "echo": {"n": 1}}

    with pytest.raises(ModelError) as model_error:
        backend.invoke_endpoint("digits", b"\xff", "image/gif", "application/json")
    assert model_error.value.status_code == 424 and model_error.value.original_status_code == 415
    assert model_error.value.message.startswith('Received client error (415) from primary with message "')
    with pytest.raises(SageMakerError) as missing:
        backend.invoke_endpoint("nope", b"{}", "application/json", "application/json")
    assert (missing.value.code, missing.value.message) == (
        "ValidationError",
        "Endpoint nope of account 123456789012 not found.",
    )

    second = _deploy_model(backend, s3_endpoint, 2)
    answers: list[int] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def client() -> None:
        count = 0
        while not done.is_set():
            try:
                answers.append(_invoke(backend, "digits", {"n": count})["version"])
            except BaseException as e:
                failures.append(e)
            count += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(0.3)
    backend.handle("UpdateEndpoint", {"EndpointName": "digits", "EndpointConfigName": second})
    assert _status(backend, "digits") == "Updating"
    with pytest.raises(SageMakerError) as busy:
        backend.handle("UpdateEndpoint", {"EndpointName": "digits", "EndpointConfigName": second})
    assert busy.value.code == "ValidationException"
    wait_for(lambda: _status(backend, "digits") == "InService", timeout=120)
    wait_for(lambda: answers[-8:] == [2] * 8, timeout=30)
    done.set()
    for thread in clients:
        thread.join()

    assert failures == []
    assert 1 in answers and 2 in answers
    switch = answers.index(2)
    assert len(answers) > 20 and switch > 0
    described = backend.handle("DescribeEndpoint", {"EndpointName": "digits"})
    assert described["EndpointConfigName"] == "config-v2"
    assert len(backend.context.processes._children) == 1  # the old server was retired

    backend.handle("DeleteEndpoint", {"EndpointName": "digits"})
    wait_for(lambda: not backend.context.processes._children, timeout=60)
    with pytest.raises(SageMakerError) as gone:
        backend.handle("DescribeEndpoint", {"EndpointName": "digits"})
    assert (
        gone.value.message
        == 'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/digits".'
    )


def test_model_needs_its_data_and_a_broken_model_fails_the_endpoint(backend: Any, s3_endpoint: str) -> None:
    with pytest.raises(SageMakerError) as no_data:
        backend.handle(
            "CreateModel",
            {
                "ModelName": "ghost",
                "ExecutionRoleArn": ROLE_ARN,
                "PrimaryContainer": {"Image": "x", "ModelDataUrl": f"s3://{BUCKET}/missing/model.tar.gz"},
            },
        )
    assert no_data.value.code == "ValidationException"
    s3_client(s3_endpoint).put_object(
        Bucket=BUCKET, Key="broken/model.tar.gz", Body=tarball({"README": "no code"})
    )
    backend.handle(
        "CreateModel",
        {
            "ModelName": "broken",
            "ExecutionRoleArn": ROLE_ARN,
            "PrimaryContainer": {"Image": "x", "ModelDataUrl": f"s3://{BUCKET}/broken/model.tar.gz"},
        },
    )
    backend.handle(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "broken-config",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "broken",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        },
    )
    backend.handle("CreateEndpoint", {"EndpointName": "broken", "EndpointConfigName": "broken-config"})
    wait_for(lambda: _status(backend, "broken") != "Creating", timeout=120)
    described = backend.handle("DescribeEndpoint", {"EndpointName": "broken"})
    assert described["EndpointStatus"] == "Failed" and described["FailureReason"]
    with pytest.raises(SageMakerError) as not_found:
        backend.handle("CreateEndpoint", {"EndpointName": "other", "EndpointConfigName": "no-such-config"})
    assert not_found.value.message.startswith('Could not find endpoint configuration "arn:aws:sagemaker:')
