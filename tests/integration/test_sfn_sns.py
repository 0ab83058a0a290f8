"""A Task's SNS publish (the pipeline's Notify step) reaches a moto server through aws_endpoint_url."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sfn_fakes import FakeLambdas, FakeSageMaker, run_machine

from stepsage.local.stepfunctions import StepFunctionsService

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def moto_url() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _client(service_name: str, url: str) -> Any:
    make_client: Any = boto3.client
    return make_client(
        service_name,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_notify_publish_arrives_on_the_topic(moto_url: str) -> None:
    sns = _client("sns", moto_url)
    sqs = _client("sqs", moto_url)
    topic_arn = sns.create_topic(Name="pipeline-notices")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="notices")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )

    service = StepFunctionsService(FakeLambdas().invoke, FakeSageMaker(), aws_endpoint_url=moto_url)
    definition = {
        "StartAt": "Notify",
        "States": {
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {
                    "TopicArn": topic_arn,
                    "Subject": "stepsage run failed",
                    "Message.$": "States.JsonToString($.error)",
                },
                "ResultPath": "$.notice",
                "End": True,
            }
        },
    }
    try:
        result = run_machine(
            service, definition, {"error": {"Error": "DatasetValidationError", "Cause": "bad zip"}}
        )
    finally:
        service.shutdown()

    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["notice"]["MessageId"]
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    assert json.loads(messages[0]["Body"]) == {"Error": "DatasetValidationError", "Cause": "bad zip"}


def test_publish_to_a_missing_topic_fails_the_task(moto_url: str) -> None:
    service = StepFunctionsService(FakeLambdas().invoke, FakeSageMaker(), aws_endpoint_url=moto_url)
    definition = {
        "StartAt": "Notify",
        "States": {
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:absent", "Message": "hello"},
                "End": True,
            }
        },
    }
    try:
        result = run_machine(service, definition)
    finally:
        service.shutdown()

    assert result["status"] == "FAILED"
    assert result["error"] == "SNS.NotFoundException"
