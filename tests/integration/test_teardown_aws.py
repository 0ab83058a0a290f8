"""`stepsage aws teardown` against moto (stack, versioned buckets, SageMaker) and botocore's Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from stepsage.aws import teardown as td
from stepsage.cli import main

pytestmark = pytest.mark.integration

REGION = "us-east-1"
STACK = "stepsage-test"
OTHER_STACK = "someone-else"

# The stack's shape as far as teardown cares: the template's logical ids for the buckets and state machine.
STACK_TEMPLATE = {
    "Resources": {
        "DataBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
        },
        "ArtifactsBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
        },
        "PipelineStateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "RoleArn": "arn:aws:iam::123456789012:role/sfn",
                "DefinitionString": json.dumps(
                    {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
                ),
            },
        },
    }
}


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def _stack_resources(session: boto3.Session) -> dict[str, str]:
    cfn = session.client("cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(STACK_TEMPLATE))
    resources = td.stack_resources(cfn, STACK)
    # moto's CloudFormation ignores VersioningConfiguration; the real stack's buckets are versioned.
    for logical_id in td.BUCKET_LOGICAL_IDS:
        session.client("s3").put_bucket_versioning(
            Bucket=resources[logical_id], VersioningConfiguration={"Status": "Enabled"}
        )
    return resources


def _fill_versioned_bucket(s3: Any, bucket: str) -> int:
    """Two versions of one key, a deleted key (version + marker), one more key: 5 entries to remove."""
    s3.put_object(Bucket=bucket, Key="datasets/a.zip", Body=b"one")
    s3.put_object(Bucket=bucket, Key="datasets/a.zip", Body=b"two")
    s3.put_object(Bucket=bucket, Key="staged/gone.txt", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="staged/gone.txt")
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=b"tar")
    s3.create_multipart_upload(Bucket=bucket, Key="big/upload.bin")
    return 5


def _runtime_resources(sm: Any, name: str, stack: str) -> None:
    tags = [{"Key": td.STACK_TAG, "Value": stack}, {"Key": "stepsage:dataset", "Value": name}]
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        PrimaryContainer={"Image": "123.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"},
        Tags=tags,
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-model",
                "ServerlessConfig": {"MemorySizeInMB": 3072, "MaxConcurrency": 5},
            }
        ],
        Tags=tags,
    )
    sm.create_endpoint(EndpointName=f"stepsage-{name}", EndpointConfigName=f"{name}-config", Tags=tags)


def test_teardown_empties_versioned_buckets_and_deletes_only_this_stacks_resources(
    session: boto3.Session,
) -> None:
    resources = _stack_resources(session)
    s3, sm, sfn = session.client("s3"), session.client("sagemaker"), session.client("stepfunctions")
    data, artifacts = resources["DataBucket"], resources["ArtifactsBucket"]
    expected_removed = {
        data: _fill_versioned_bucket(s3, data),
        artifacts: _fill_versioned_bucket(s3, artifacts),
    }
    _runtime_resources(sm, "digits", STACK)
    _runtime_resources(sm, "birds", OTHER_STACK)
    execution = sfn.start_execution(stateMachineArn=resources["PipelineStateMachine"], name="run-1")

    report = td.teardown(STACK, td.Clients.from_session(session))

    assert report.emptied_buckets == expected_removed
    assert report.aborted_uploads == 2
    for bucket in (data, artifacts):
        listing = s3.list_object_versions(Bucket=bucket)
        assert listing.get("Versions", []) == [] and listing.get("DeleteMarkers", []) == []
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        s3.delete_bucket(Bucket=bucket)  # fails unless truly empty, as CloudFormation's delete would

    assert report.deleted_endpoints == ["stepsage-digits"]
    assert report.deleted_endpoint_configs == ["digits-config"]
    assert report.deleted_models == ["digits-model"]
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["stepsage-birds"]
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == [
        "birds-config"
    ]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["birds-model"]

    assert report.stopped_executions == [execution["executionArn"]]
    assert sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "ABORTED"


def test_dry_run_lists_without_deleting(session: boto3.Session) -> None:
    resources = _stack_resources(session)
    s3, sm = session.client("s3"), session.client("sagemaker")
    _fill_versioned_bucket(s3, resources["DataBucket"])
    _runtime_resources(sm, "digits", STACK)

    report = td.teardown(STACK, td.Clients.from_session(session), dry_run=True)

    assert report.emptied_buckets[resources["DataBucket"]] == 5
    assert report.deleted_endpoints == ["stepsage-digits"]
    assert len(s3.list_object_versions(Bucket=resources["DataBucket"])["Versions"]) == 4
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["stepsage-digits"]


def test_missing_stack_is_a_clear_error(session: boto3.Session) -> None:
    with pytest.raises(td.StackNotFoundError, match="does not exist"):
        td.teardown("no-such-stack", td.Clients.from_session(session))


def test_cli_teardown_prints_json_and_deletes_the_stack(
    session: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    resources = _stack_resources(session)
    _fill_versioned_bucket(session.client("s3"), resources["ArtifactsBucket"])

    code = main(
        ["aws", "teardown", "--stack", STACK, "--yes", "--json", "--delete-stack", "--region", REGION]
    )

    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stack_deleted"] is True
    assert printed["emptied_buckets"][resources["ArtifactsBucket"]] == 5
    stacks = session.client("cloudformation").list_stacks(StackStatusFilter=["DELETE_COMPLETE"])
    assert [s["StackName"] for s in stacks["StackSummaries"]] == [STACK]


def test_cli_missing_stack_exits_2(session: boto3.Session, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "teardown", "--stack", "absent", "--yes", "--region", REGION]) == 2
    assert "absent" in capsys.readouterr().err


# --- Stubber: exact request shapes, pagination and error paths that moto does not exercise ---------------


def _client(service: str) -> Any:
    # The service name is a variable, which boto3-stubs' per-service overloads cannot type.
    factory: Any = boto3.client
    return factory(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


def test_sagemaker_tags_are_paged_and_kinds_go_endpoints_then_configs_then_models() -> None:
    sm = _client("sagemaker")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:{}/{}"
    ours = [{"Key": td.STACK_TAG, "Value": STACK}]
    created = "2026-01-01T00:00:00Z"
    endpoint_arn = arn.format("endpoint", "stepsage-a")
    with Stubber(sm) as stub:
        stub.add_response(
            "list_endpoints",
            {
                "Endpoints": [
                    {
                        "EndpointName": "stepsage-a",
                        "EndpointArn": endpoint_arn,
                        "CreationTime": created,
                        "LastModifiedTime": created,
                        "EndpointStatus": "InService",
                    }
                ]
            },
            {},
        )
        # The stack tag sits on the second page of tags: teardown must follow NextToken.
        stub.add_response(
            "list_tags",
            {"Tags": [{"Key": "other", "Value": "x"}], "NextToken": "t2"},
            {"ResourceArn": endpoint_arn},
        )
        stub.add_response("list_tags", {"Tags": ours}, {"ResourceArn": endpoint_arn, "NextToken": "t2"})
        stub.add_response("delete_endpoint", {}, {"EndpointName": "stepsage-a"})
        config_arn = arn.format("endpoint-config", "a-config")
        stub.add_response(
            "list_endpoint_configs",
            {
                "EndpointConfigs": [
                    {
                        "EndpointConfigName": "a-config",
                        "EndpointConfigArn": config_arn,
                        "CreationTime": created,
                    }
                ]
            },
            {},
        )
        stub.add_response("list_tags", {"Tags": ours}, {"ResourceArn": config_arn})
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "a-config"})
        model_arn, untagged_arn = arn.format("model", "a-model"), arn.format("model", "untagged")
        stub.add_response(
            "list_models",
            {
                "Models": [
                    {"ModelName": "a-model", "ModelArn": model_arn, "CreationTime": created},
                    {"ModelName": "untagged", "ModelArn": untagged_arn, "CreationTime": created},
                ]
            },
            {},
        )
        stub.add_response("list_tags", {"Tags": ours}, {"ResourceArn": model_arn})
        stub.add_response("list_tags", {"Tags": []}, {"ResourceArn": untagged_arn})
        stub.add_response("delete_model", {}, {"ModelName": "a-model"})

        report = td.TeardownReport(stack=STACK, dry_run=False)
        td.delete_sagemaker_resources(sm, STACK, dry_run=False, report=report)
        stub.assert_no_pending_responses()
    assert (report.deleted_endpoints, report.deleted_endpoint_configs, report.deleted_models) == (
        ["stepsage-a"],
        ["a-config"],
        ["a-model"],
    )


def test_failed_object_deletes_raise_a_teardown_error() -> None:
    s3 = _client("s3")
    with Stubber(s3) as stub:
        stub.add_response(
            "list_object_versions",
            {"Versions": [{"Key": "k", "VersionId": "v1"}], "DeleteMarkers": [], "IsTruncated": False},
            {"Bucket": "b"},
        )
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "k", "VersionId": "v1", "Code": "AccessDenied", "Message": "denied"}]},
            {"Bucket": "b", "Delete": {"Objects": [{"Key": "k", "VersionId": "v1"}], "Quiet": True}},
        )
        with pytest.raises(td.TeardownError, match="AccessDenied"):
            td.empty_bucket(s3, "b", dry_run=False)


def test_versions_are_deleted_in_batches_of_1000() -> None:
    s3 = _client("s3")
    versions = [{"Key": f"k{i}", "VersionId": f"v{i}"} for i in range(1500)]
    with Stubber(s3) as stub:
        stub.add_response(
            "list_object_versions", {"Versions": versions, "IsTruncated": False}, {"Bucket": "b"}
        )
        stub.add_response(
            "delete_objects", {}, {"Bucket": "b", "Delete": {"Objects": versions[:1000], "Quiet": True}}
        )
        stub.add_response(
            "delete_objects", {}, {"Bucket": "b", "Delete": {"Objects": versions[1000:], "Quiet": True}}
        )
        stub.add_response("list_multipart_uploads", {"Uploads": [], "IsTruncated": False}, {"Bucket": "b"})
        assert td.empty_bucket(s3, "b", dry_run=False) == (1500, 0)
        stub.assert_no_pending_responses()


def test_a_bucket_already_gone_counts_as_empty() -> None:
    s3 = _client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("list_object_versions", service_error_code="NoSuchBucket", http_status_code=404)
        assert td.empty_bucket(s3, "gone", dry_run=False) == (0, 0)
