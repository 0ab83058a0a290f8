"""start_pipeline's decisions and the naming rules it relies on, with no AWS."""

from __future__ import annotations

import pytest
from events_fixture import load_event, load_lambda_module

pytestmark = pytest.mark.unit

trigger = load_lambda_module("start_pipeline", "trigger")
from stepsage_lambda import naming  # noqa: E402


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("datasets/digits.zip", "digits"),
        ("datasets/dogImages/_READY", "dogImages"),
        ("datasets/my data v2.zip", "my data v2"),
    ],
)
def test_dataset_keys_are_recognised(key: str, dataset: str) -> None:
    assert naming.dataset_name_from_key(key) == dataset


@pytest.mark.parametrize(
    "key",
    [
        "datasets/dogImages/train/001.Affenpinscher/a.jpg",
        "datasets/nested/deeper.zip",
        "datasets/.zip",
        "other/digits.zip",
        "datasets/digits.tar.gz",
        "datasets/dogImages/_READY.txt",
    ],
)
def test_other_keys_are_ignored(key: str) -> None:
    assert trigger.plan_start("bucket", key, "v1") is None


def test_execution_name_is_deterministic_per_object_version() -> None:
    first = naming.execution_name("bucket", "datasets/digits.zip", "v1", "digits")
    assert first == naming.execution_name("bucket", "datasets/digits.zip", "v1", "digits")
    assert first != naming.execution_name("bucket", "datasets/digits.zip", "v2", "digits")
    assert first != naming.execution_name("other", "datasets/digits.zip", "v1", "digits")
    assert first.startswith("digits-") and naming.SAGEMAKER_NAME.match(first)


@pytest.mark.parametrize("dataset", ["x" * 200, "Dog Images (2024)!", "___", "日本語"])
def test_execution_names_fit_every_job_suffix(dataset: str) -> None:
    name = naming.execution_name("bucket", f"datasets/{dataset}.zip", None, dataset)
    assert len(name) <= naming.EXECUTION_NAME_MAX
    assert len(naming.tuning_job_name(name, 99)) <= naming.TUNING_JOB_NAME_MAX
    assert len(naming.final_training_job_name(name, 99)) <= naming.TRAINING_JOB_NAME_MAX
    assert naming.SAGEMAKER_NAME.match(naming.tuning_job_name(name, 99))
    assert naming.SAGEMAKER_NAME.match(naming.model_name(name))


def test_plan_carries_what_stage_data_needs() -> None:
    detail = load_event("s3_object_created")["detail"]
    plan = trigger.plan_start(
        detail["bucket"]["name"], detail["object"]["key"], detail["object"]["version-id"]
    )
    assert plan is not None
    assert plan.payload == {
        "bucket": "stepsage-data-123456789012",
        "key": "datasets/digits.zip",
        "version_id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        "dataset_name": "digits",
    }
    assert plan.execution_name == naming.execution_name(
        "stepsage-data-123456789012", "datasets/digits.zip", "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "digits"
    )


@pytest.mark.parametrize(
    ("dataset", "endpoint"),
    [("digits", "stepsage-digits"), ("dogImages", "stepsage-dogImages"), ("a9", "stepsage-a9")],
)
def test_endpoint_is_stack_dash_name_when_sagemaker_accepts_it(dataset: str, endpoint: str) -> None:
    # Issue 9: the stack's name, not a fixed "stepsage-", so two stacks in one account never share one.
    assert naming.endpoint_name("stepsage", dataset) == endpoint


def test_endpoint_names_for_awkward_datasets_are_valid_and_distinct() -> None:
    awkward = ("dog_images", "dog images", "dog-images", "x" * 100, "___", "a-b-9")
    names = {naming.endpoint_name("stepsage", d) for d in awkward}
    assert len(names) == len(awkward)
    for name in names:
        assert len(name) <= naming.ENDPOINT_NAME_MAX and naming.SAGEMAKER_NAME.match(name)


def test_tag_values_stay_in_sagemakers_alphabet() -> None:
    assert naming.tag_value("dog images (v2)!") == "dog images -v2--"
    assert len(naming.tag_value("x" * 300)) == 256
