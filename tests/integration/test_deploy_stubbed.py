"""deploy and smoke test on moto S3 and stubbed SageMaker/Runtime; every SageMaker request is validated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY
from lambda_harness import load_event, load_lambda_module, streaming, stubbed, tarball, validate_request
from moto import mock_aws

pytestmark = pytest.mark.integration

deployer = load_lambda_module("deploy", "deployer")
smoke = load_lambda_module("smoke_test", "smoke_check")
from stepsage_lambda import naming  # noqa: E402
from stepsage_lambda.endpoint_services import EndpointServices  # noqa: E402
from stepsage_lambda.errors import EndpointBusy, SmokeTestFailed  # noqa: E402
from stepsage_lambda.payloads import DeployInput, SmokeTestInput  # noqa: E402
from stepsage_lambda.runtime_api import RuntimeApi  # noqa: E402
from stepsage_lambda.s3_api import S3Api  # noqa: E402
from stepsage_lambda.sagemaker_api import SageMakerApi  # noqa: E402

BUCKET = "stepsage-artifacts-123456789012"
WHEN = datetime(2026, 11, 1, tzinfo=UTC)
EVENT = load_event("deploy")
EXECUTION = EVENT["execution_name"]
CHAMPION_ARTIFACT = f"s3://{BUCKET}/runs/old/final/old-final-0/output/model.tar.gz"
TEST_KEYS = ["0/a.png", "0/b.png", "1/a.png", "1/b.png"]
ENV = {
    "INFERENCE_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311",
    "STACK_NAME": "stepsage-test",
    "INVOKE_THREADS": "1",
    "SMOKE_TEST_IMAGES": "4",
    "SMOKE_TEST_MARGIN": "0.1",
    "KEEP_RUNTIME_RESOURCES": "2",
}
# The stack's own endpoint for the dataset (issue 9: named per stack, so two stacks never share one).
ENDPOINT = naming.endpoint_name(ENV["STACK_NAME"], EVENT["dataset"]["dataset_name"])
assert ENDPOINT == "stepsage-test-digits"
ENDPOINT_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"


class World:
    """moto S3 with the artifacts and test split, stubbed SageMaker and Runtime, and the requests sent."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.sm, self.sm_stub = stubbed("sagemaker")
        self.rt, self.rt_stub = stubbed("sagemaker-runtime")
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.sm.meta.events.register("provide-client-params.sagemaker.*", self._capture)
        self.services = EndpointServices(SageMakerApi(self.sm), S3Api(s3), RuntimeApi(self.rt))

    def _capture(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append((model.name, dict(params)))

    def validate_all(self) -> None:
        self.sm_stub.assert_no_pending_responses()
        self.rt_stub.assert_no_pending_responses()
        for operation, params in self.sent:
            validate_request(operation, params)

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.sent]

    # SageMaker responses

    def no_endpoint(self) -> None:
        self.sm_stub.add_response(
            "list_endpoints", {"Endpoints": []}, {"NameContains": ENDPOINT, "MaxResults": 100}
        )

    def endpoint(self, status: str = "InService", config: str = "old-config") -> None:
        summary = {
            "EndpointName": ENDPOINT,
            "EndpointArn": ENDPOINT_ARN,
            "CreationTime": WHEN,
            "LastModifiedTime": WHEN,
            "EndpointStatus": status,
        }
        self.sm_stub.add_response(
            "list_endpoints", {"Endpoints": [summary]}, {"NameContains": ENDPOINT, "MaxResults": 100}
        )
        self.sm_stub.add_response(
            "describe_endpoint", {**summary, "EndpointConfigName": config}, {"EndpointName": ENDPOINT}
        )

    def champion_model(self) -> None:
        variant = {"VariantName": "AllTraffic", "ModelName": "old-model"}
        self.sm_stub.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": "old-config",
                "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/old-config",
                "ProductionVariants": [variant],
                "CreationTime": WHEN,
            },
            {"EndpointConfigName": "old-config"},
        )
        self.sm_stub.add_response(
            "describe_model",
            {
                "ModelName": "old-model",
                "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/old-model",
                "CreationTime": WHEN,
                "PrimaryContainer": {"Image": "img", "ModelDataUrl": CHAMPION_ARTIFACT},
            },
            {"ModelName": "old-model"},
        )

    def creations(self, create_endpoint: bool, endpoint_error: str | None = None) -> None:
        model, config = naming.model_name(EXECUTION), naming.endpoint_config_name(EXECUTION)
        self.sm_stub.add_response("list_models", {"Models": []}, {"NameContains": model, "MaxResults": 100})
        self.sm_stub.add_response(
            "create_model", {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{model}"}
        )
        self.sm_stub.add_response(
            "list_endpoint_configs", {"EndpointConfigs": []}, {"NameContains": config, "MaxResults": 100}
        )
        self.sm_stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{config}"},
        )
        if endpoint_error:
            self.sm_stub.add_client_error(
                "create_endpoint", service_error_code=endpoint_error, http_status_code=400
            )
        elif create_endpoint:
            self.sm_stub.add_response(
                "create_endpoint",
                {"EndpointArn": ENDPOINT_ARN},
                {"EndpointName": ENDPOINT, "EndpointConfigName": config, "Tags": ANY},
            )
        else:
            self.sm_stub.add_response(
                "update_endpoint",
                {"EndpointArn": ENDPOINT_ARN},
                {"EndpointName": ENDPOINT, "EndpointConfigName": config},
            )

    def answers(self, labels: list[str]) -> None:
        for label in labels:
            body = json.dumps({"predictions": [{"label": label, "score": 0.9}], "model": {}}).encode()
            self.rt_stub.add_response(
                "invoke_endpoint",
                {"Body": streaming(body), "ContentType": "application/json"},
                {
                    "EndpointName": ENDPOINT,
                    "Body": ANY,
                    "ContentType": "image/png",
                    "Accept": "application/json",
                },
            )


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        challenger = tarball(
            {"model.pth": b"w" * 1000, "evaluation.json": b'{"accuracy": 0.75}', "labels.json": b'["0", "1"]'}
        )
        _, key = EVENT["model_artifacts"].split(f"s3://{BUCKET}/")
        s3.put_object(Bucket=BUCKET, Key=key, Body=challenger)
        test_prefix = EVENT["dataset"]["channels"]["test"].removeprefix(f"s3://{BUCKET}/")
        for name in TEST_KEYS:
            s3.put_object(Bucket=BUCKET, Key=test_prefix + name, Body=b"\x89PNG fake")
        yield World(s3)


def _champion_labels(world: World, labels: list[str]) -> None:
    body = tarball({"labels.json": json.dumps(labels).encode()})
    world.s3.put_object(Bucket=BUCKET, Key=CHAMPION_ARTIFACT.removeprefix(f"s3://{BUCKET}/"), Body=body)


def _deploy(world: World, **env: str) -> dict[str, Any]:
    return deployer.deploy(
        DeployInput.model_validate(EVENT),
        settings=deployer.DeploySettings.from_env({**ENV, **env}),
        services=world.services,
    ).model_dump(mode="json")


def _smoke_test(deployment: dict[str, Any], world: World) -> dict[str, Any]:
    event = SmokeTestInput.model_validate({"deployment": deployment, "dataset": EVENT["dataset"]})
    return smoke.smoke_test(
        event, settings=smoke.SmokeSettings.from_env(ENV), services=world.services
    ).model_dump(mode="json")


def test_first_deploy_creates_model_config_and_endpoint(world: World) -> None:
    world.no_endpoint()
    world.creations(create_endpoint=True)
    result = _deploy(world)
    world.validate_all()
    assert result["deployed"] is True and result["created"] is True
    assert result["comparison"]["reason"] == "no-champion" and result["previous_endpoint_config_name"] is None
    assert result["expected_accuracy"] == 0.75
    sent = dict(world.sent)
    container = sent["CreateModel"]["PrimaryContainer"]
    assert container["ModelDataUrl"] == EVENT["model_artifacts"]
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert {"Key": "stepsage:decision", "Value": "deploy"} in sent["CreateModel"]["Tags"]
    assert sent["CreateEndpointConfig"]["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 3072


def test_a_worse_champion_is_replaced_by_update(world: World) -> None:
    _champion_labels(world, ["0", "1"])
    world.endpoint()
    world.champion_model()
    world.answers(["0", "1", "0", "1"])  # half right: 0.5 < 0.75
    world.creations(create_endpoint=False)
    world.sm_stub.add_response("add_tags", {"Tags": []})
    result = _deploy(world, CHAMPION_MAX_IMAGES="4", ENDPOINT_KIND="realtime")
    world.validate_all()
    assert result["deployed"] is True and result["created"] is False
    assert result["comparison"] == {
        "decision": "deploy",
        "reason": "challenger-at-least-as-good",
        "challenger_accuracy": 0.75,
        "champion_accuracy": 0.5,
        "images": 4,
    }
    assert result["previous_endpoint_config_name"] == "old-config"
    tags = {t["Key"]: t["Value"] for t in dict(world.sent)["AddTags"]["Tags"]}
    assert tags["stepsage:champion-accuracy"] == "0.5000"


def test_a_better_champion_keeps_serving(world: World) -> None:
    _champion_labels(world, ["0", "1"])
    world.endpoint()
    world.champion_model()
    world.answers(["0", "0", "1", "1"])  # all right: 1.0 > 0.75
    world.sm_stub.add_response("add_tags", {"Tags": []})
    result = _deploy(world)
    world.validate_all()
    assert result["deployed"] is False
    assert result["comparison"]["decision"] == "keep-champion"
    assert "CreateModel" not in world.operations() and "UpdateEndpoint" not in world.operations()


def test_new_labels_skip_the_comparison(world: World) -> None:
    _champion_labels(world, ["cat", "dog"])
    world.endpoint()
    world.champion_model()
    world.creations(create_endpoint=False)
    world.sm_stub.add_response("add_tags", {"Tags": []})
    result = _deploy(world)
    world.validate_all()
    assert result["comparison"]["reason"] == "labels-changed" and result["deployed"] is True


def test_an_endpoint_another_run_is_updating_is_busy(world: World) -> None:
    world.endpoint(status="Updating")
    with pytest.raises(EndpointBusy, match="Updating"):
        _deploy(world)
    world.validate_all()


def test_resource_in_use_becomes_endpoint_busy(world: World) -> None:
    world.no_endpoint()
    world.creations(create_endpoint=True, endpoint_error="ResourceInUse")
    with pytest.raises(EndpointBusy):
        _deploy(world)


def _deployment() -> dict[str, Any]:
    # The sample event is a stack named "stepsage"; this test's stack is ENV's.
    return {**load_event("smoke_test")["deployment"], "endpoint_name": ENDPOINT, "expected_accuracy": 0.9}


def test_smoke_test_passes_and_prunes_old_resources(world: World) -> None:
    deployment = _deployment()
    world.endpoint(config=deployment["endpoint_config_name"])
    world.answers(["0", "0", "1", "1"])
    ours = {"stepsage:stack": "stepsage-test", "stepsage:dataset": "digits"}
    configs = [
        deployment["endpoint_config_name"],
        deployment["previous_endpoint_config_name"],
        "c-older",
        "c-oldest",
    ]
    world.sm_stub.add_response(
        "list_endpoint_configs",
        {
            "EndpointConfigs": [
                {
                    "EndpointConfigName": c,
                    "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{c}",
                    "CreationTime": WHEN,
                }
                for c in configs
            ]
        },
    )
    for _ in configs:
        world.sm_stub.add_response("list_tags", {"Tags": [{"Key": k, "Value": v} for k, v in ours.items()]})
    world.sm_stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "c-older"})
    world.sm_stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "c-oldest"})
    world.sm_stub.add_response("list_models", {"Models": []})
    result = _smoke_test(deployment, world)
    world.validate_all()
    assert result["status"] == "passed" and result["accuracy"] == 1.0
    assert result["pruned"] == ["c-older", "c-oldest"]


def test_smoke_test_failure_rolls_back_to_the_previous_config(world: World) -> None:
    deployment = _deployment()
    world.endpoint(config=deployment["endpoint_config_name"])
    world.answers(["1", "1", "0", "0"])  # all wrong
    world.sm_stub.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": ENDPOINT, "EndpointConfigName": deployment["previous_endpoint_config_name"]},
    )
    with pytest.raises(SmokeTestFailed, match="rolled back to digits-0a1b2c3d4e5f-config"):
        _smoke_test(deployment, world)
    world.validate_all()


def test_smoke_test_leaves_an_endpoint_a_later_run_took_over(world: World) -> None:
    world.endpoint(config="later-run-config")
    result = _smoke_test(_deployment(), world)
    assert result == {"status": "superseded", "endpoint_name": ENDPOINT}
    world.validate_all()
