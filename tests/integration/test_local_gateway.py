"""The local endpoint: JSON-protocol services and SageMaker Runtime routed to ours, the rest to moto."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from stepsage.local.errors import LambdaFunctionError, SageMakerError
from stepsage.local.function_url import FunctionUrlServer
from stepsage.local.gateway import Gateway, GatewayServer, moto_wsgi_app

pytestmark = pytest.mark.integration


class RecordingSageMaker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def handle(self, operation, params):
        self.calls.append((operation, params))
        if params.get("TrainingJobName") == "missing":
            raise SageMakerError("ValidationException", "Requested resource not found.")
        return {
            "TrainingJobName": params.get("TrainingJobName"),
            "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
        }

    def invoke_endpoint(self, endpoint_name, body, content_type, accept):
        if endpoint_name == "broken":
            error = SageMakerError("ModelError", "Received client error (400) from primary", 424)
            error.original_status_code = 400  # type: ignore[attr-defined]
            raise error
        return (
            200,
            json.dumps({"endpoint": endpoint_name, "bytes": len(body), "type": content_type}).encode(),
            "application/json",
        )


@pytest.fixture
def gateway():
    sagemaker = RecordingSageMaker()
    server = GatewayServer(
        Gateway(moto_wsgi_app(), {"SageMaker": sagemaker}, runtime=sagemaker), port=0
    ).start()
    yield server.url, sagemaker
    server.stop()


def _client(service, url):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_sagemaker_calls_reach_our_service_with_aws_shapes(gateway):
    url, sagemaker = gateway
    response = _client("sagemaker", url).describe_training_job(TrainingJobName="job-1")
    assert response["TrainingJobName"] == "job-1"
    assert response["CreationTime"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert sagemaker.calls == [("DescribeTrainingJob", {"TrainingJobName": "job-1"})]
    with pytest.raises(ClientError) as error:
        _client("sagemaker", url).describe_training_job(TrainingJobName="missing")
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_runtime_invoke_endpoint_and_model_error(gateway):
    url, _ = gateway
    runtime = _client("sagemaker-runtime", url)
    response = runtime.invoke_endpoint(EndpointName="ep", Body=b"abc", ContentType="image/jpeg")
    assert json.loads(response["Body"].read()) == {"endpoint": "ep", "bytes": 3, "type": "image/jpeg"}
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName="broken", Body=b"x", ContentType="image/jpeg")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["OriginalStatusCode"] == 400


def test_everything_else_goes_to_moto(gateway):
    url, _ = gateway
    s3 = _client("s3", url)
    s3.create_bucket(Bucket="bucket-one")
    s3.put_object(Bucket="bucket-one", Key="k", Body=b"v")
    assert s3.get_object(Bucket="bucket-one", Key="k")["Body"].read() == b"v"
    sns = _client("sns", url)
    assert sns.create_topic(Name="t")["TopicArn"].endswith(":t")


def test_function_url_turns_requests_into_v2_events():
    seen = []

    def invoke(event):
        seen.append(event)
        if event["rawPath"] == "/boom":
            raise LambdaFunctionError("ValueError", "bad")
        if event["rawPath"] == "/plain":
            return {"ok": True}
        return {
            "statusCode": 201,
            "headers": {"X-Test": "1"},
            "body": base64.b64encode(b"\x00bin").decode(),
            "isBase64Encoded": True,
        }

    server = FunctionUrlServer(invoke).start()
    try:
        request = urllib.request.Request(
            server.url + "?top_k=3",
            data=b"\xff\xd8jpeg",
            method="POST",
            headers={"Content-Type": "image/jpeg"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 201
            assert response.headers["X-Test"] == "1"
            assert response.read() == b"\x00bin"
        event = seen[-1]
        assert event["version"] == "2.0" and event["requestContext"]["http"]["method"] == "POST"
        assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xd8jpeg"
        assert event["queryStringParameters"] == {"top_k": "3"}
        request = urllib.request.Request(
            server.url + "plain",
            data=b'{"a": 1}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            assert json.loads(response.read()) == {"ok": True}
        assert seen[-1]["body"] == '{"a": 1}' and seen[-1]["isBase64Encoded"] is False
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(server.url + "boom")
        assert error.value.code == 502
        big = urllib.request.Request(
            server.url,
            data=b"x" * (6 * 1024 * 1024 + 1),
            method="POST",
            headers={"Content-Type": "image/jpeg"},
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(big)
        assert error.value.code == 413
    finally:
        server.stop()
