"""start_pipeline's handler on the sample EventBridge events, with Step Functions stubbed by shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from lambda_harness import FakeLambdaContext, load_event, load_lambda_module

pytestmark = pytest.mark.integration

app = load_lambda_module("start_pipeline", "app")
trigger = load_lambda_module("start_pipeline", "trigger")
from botocore.stub import ANY, Stubber  # noqa: E402

from stepsage_lambda import clients, naming  # noqa: E402

STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:stepsage-pipeline"
TOPIC = "arn:aws:sns:us-east-1:123456789012:stepsage-notices"


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    monkeypatch.setenv("STATE_MACHINE_ARN", STATE_MACHINE)
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", TOPIC)
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STEPFUNCTIONS", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(variable, raising=False)
    clients.client.cache_clear()
    # The factory caches its clients, so stubbing the instance it hands out stubs the handler's calls.
    with Stubber(clients.client("stepfunctions")) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()
    clients.client.cache_clear()


def _expected(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    detail = event["detail"]
    key, version = detail["object"]["key"], detail["object"]["version-id"]
    dataset = naming.dataset_name_from_key(key)
    assert dataset is not None
    name = naming.execution_name(detail["bucket"]["name"], key, version, dataset)
    payload = {"bucket": detail["bucket"]["name"], "key": key, "version_id": version, "dataset_name": dataset}
    return name, payload


@pytest.mark.parametrize("event_name", ["s3_object_created", "s3_ready_marker"])
def test_a_dataset_upload_starts_one_named_execution(sfn: Stubber, event_name: str) -> None:
    event = load_event(event_name)
    name, payload = _expected(event)
    arn = f"arn:aws:states:us-east-1:123456789012:execution:stepsage-pipeline:{name}"
    sfn.add_response(
        "start_execution",
        {"executionArn": arn, "startDate": datetime(2026, 11, 1, tzinfo=UTC)},
        expected_params={
            "stateMachineArn": STATE_MACHINE,
            "name": name,
            "input": json.dumps(payload, sort_keys=True),
        },
    )
    result = app.lambda_handler(event, FakeLambdaContext())
    assert result["status"] == "started" and result["execution_arn"] == arn
    assert result["execution_name"] == name and len(name) <= naming.EXECUTION_NAME_MAX


def test_a_redelivered_event_is_a_duplicate_not_a_failure(sfn: Stubber) -> None:
    event = load_event("s3_object_created")
    name, _ = _expected(event)
    sfn.add_client_error("start_execution", service_error_code="ExecutionAlreadyExists", http_status_code=400)
    result = app.lambda_handler(event, FakeLambdaContext())
    assert result["status"] == "duplicate"
    assert (
        result["execution_arn"] == f"arn:aws:states:us-east-1:123456789012:execution:stepsage-pipeline:{name}"
    )


def test_other_errors_still_fail_the_invocation(sfn: Stubber) -> None:
    sfn.add_client_error(
        "start_execution", service_error_code="StateMachineDoesNotExist", http_status_code=400
    )
    with pytest.raises(Exception, match="StateMachineDoesNotExist"):
        app.lambda_handler(load_event("s3_object_created"), FakeLambdaContext())


def test_keys_that_are_not_datasets_start_nothing(sfn: Stubber) -> None:
    result = app.lambda_handler(load_event("s3_ignored_key"), FakeLambdaContext())
    assert result == {"status": "ignored", "key": "datasets/dogImages/train/001.Affenpinscher/a.jpg"}


def test_a_malformed_event_is_rejected_by_the_model(sfn: Stubber) -> None:
    event = load_event("s3_object_created")
    del event["detail"]["bucket"]
    with pytest.raises(Exception, match="bucket"):
        app.lambda_handler(event, FakeLambdaContext())


@pytest.mark.parametrize("key", ["datasets/digits.tar.gz", "datasets/my data.zip", "datasets/dogs/_ready"])
def test_an_upload_that_cannot_start_a_run_publishes_a_notice(sfn: Stubber, key: str) -> None:
    event = load_event("s3_object_created")
    event["detail"]["object"]["key"] = key
    with Stubber(clients.client("sns")) as sns:
        sns.add_response(
            "publish",
            {"MessageId": "m-1"},
            expected_params={"TopicArn": TOPIC, "Subject": trigger.NOTICE_SUBJECT, "Message": ANY},
        )
        result = app.lambda_handler(event, FakeLambdaContext())
        sns.assert_no_pending_responses()
    assert result["status"] == "refused" and result["key"] == key and result["reason"]
