"""deploy's pure decisions: champion or challenger, request shapes, smoke threshold and pruning."""

from __future__ import annotations

from typing import Any

import pytest
from events_fixture import load_lambda_module

pytestmark = pytest.mark.unit

decisions = load_lambda_module("deploy", "deploy_decisions")
smoke_decisions = load_lambda_module("smoke_test", "smoke_decisions")
from stepsage_lambda import held_out  # noqa: E402
from stepsage_lambda.errors import ConfigurationError  # noqa: E402

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"


def test_no_champion_means_deploy() -> None:
    result = decisions.compare(0.5, None, champion_exists=False)
    assert (result.decision, result.reason, result.champion_accuracy) == ("deploy", "no-champion", None)


def test_new_labels_make_the_challenger_win_even_when_worse() -> None:
    result = decisions.compare(0.5, 0.99, labels_match=False)
    assert (result.decision, result.reason) == ("deploy", "labels-changed")


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "decision"),
    [
        (0.90, 0.90, 0.0, "deploy"),
        (0.91, 0.90, 0.0, "deploy"),
        (0.89, 0.90, 0.0, "keep-champion"),
        (0.89, 0.90, 0.02, "deploy"),
    ],
)
def test_challenger_must_be_at_least_as_good(
    challenger: float, champion: float, tolerance: float, decision: str
) -> None:
    result = decisions.compare(challenger, champion, images=270, tolerance=tolerance)
    assert result.decision == decision
    assert result.images == 270


def test_comparison_tags_record_both_accuracies() -> None:
    tags = decisions.compare(0.8, 0.9, images=10).as_tags()
    assert tags == {
        "stepsage:decision": "keep-champion",
        "stepsage:reason": "champion-better",
        "stepsage:challenger-accuracy": "0.8000",
        "stepsage:champion-accuracy": "0.9000",
        "stepsage:compared-images": "10",
    }


def _settings(**env: str) -> Any:
    return decisions.EndpointSettings.from_env({"INFERENCE_IMAGE_URI": IMAGE, **env})


def test_serverless_and_realtime_configs() -> None:
    serverless = decisions.endpoint_config_request("c", "m", _settings(SERVERLESS_MEMORY_MB="4096"), [])
    assert serverless["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "m",
            "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 5},
        }
    ]
    realtime = decisions.endpoint_config_request("c", "m", _settings(ENDPOINT_KIND="realtime"), [])
    variant = realtime["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 1
    assert "ServerlessConfig" not in variant


def test_model_runs_the_artifacts_own_inference_code() -> None:
    request = decisions.model_request(
        "m", "s3://b/model.tar.gz", _settings(), "arn:aws:iam::123456789012:role/r", []
    )
    assert request["PrimaryContainer"] == {
        "Image": IMAGE,
        "ModelDataUrl": "s3://b/model.tar.gz",
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        },
    }


def test_serverless_endpoints_take_the_cpu_image_when_given() -> None:
    cpu = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu"
    assert _settings(SERVERLESS_INFERENCE_IMAGE_URI=cpu).inference_image == cpu
    realtime = _settings(SERVERLESS_INFERENCE_IMAGE_URI=cpu, ENDPOINT_KIND="realtime")
    assert realtime.inference_image == IMAGE


def test_serverless_memory_must_be_an_allowed_size() -> None:
    with pytest.raises(ConfigurationError, match="1024, 2048"):
        _settings(SERVERLESS_MEMORY_MB="3000")
    with pytest.raises(ConfigurationError, match="serverless, realtime"):
        _settings(ENDPOINT_KIND="batch")


def test_sample_evenly_spreads_over_the_list() -> None:
    items = [f"class{c}/img{i}" for c in range(5) for i in range(20)]
    chosen = held_out.sample_evenly(items, 10)
    assert len(chosen) == 10 and len({c.split("/")[0] for c in chosen}) == 5
    assert held_out.sample_evenly(items[:3], 10) == items[:3]
    assert held_out.sample_evenly(items, 0) == []


def test_smoke_threshold_widens_for_small_samples() -> None:
    assert smoke_decisions.smoke_threshold(0.9, 10_000, 0.1) == pytest.approx(0.8)
    small = smoke_decisions.smoke_threshold(0.9, 20, 0.1)
    assert small == pytest.approx(0.9 - 3 * (0.9 * 0.1 / 20) ** 0.5)
    assert smoke_decisions.smoke_threshold(1.0, 20, 0.05) == pytest.approx(0.95)
    assert smoke_decisions.smoke_threshold(0.3, 5, 0.5) == 0.0


def test_stale_resources_keep_the_newest_and_the_protected() -> None:
    ours = {"stepsage:stack": "s", "stepsage:dataset": "digits"}
    newest_first = [
        ("c5", ours),
        ("other-stack", {"stepsage:stack": "t", "stepsage:dataset": "digits"}),
        ("c4", ours),
        ("other-data", {"stepsage:stack": "s", "stepsage:dataset": "dogs"}),
        ("c3", ours),
        ("c2", ours),
        ("c1", ours),
    ]
    stale = smoke_decisions.stale_resources(
        newest_first, stack_name="s", dataset_name="digits", keep=2, protected={"c2"}
    )
    assert stale == ["c3", "c1"]
