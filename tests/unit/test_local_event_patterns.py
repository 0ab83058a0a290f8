"""EventBridge content filtering as the local dispatcher applies it to S3 events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepsage.local.events import pattern_matches, s3_event

pytestmark = pytest.mark.unit


def _event(key: str, size: int = 10, bucket: str = "data") -> dict:
    return s3_event(
        account_id="123456789012",
        region="us-east-1",
        bucket=bucket,
        key=key,
        size=size,
        etag='"abc"',
        version_id="v1",
        reason="PutObject",
    )


DATASET_RULE = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {
        "bucket": {"name": ["data"]},
        "object": {"key": [{"wildcard": "datasets/*.zip"}, {"suffix": "/_READY"}]},
    },
}


@pytest.mark.parametrize(
    ("key", "bucket", "matches"),
    [
        ("datasets/dogs.zip", "data", True),
        ("datasets/dogs/_READY", "data", True),
        ("datasets/dogs/train/001.A/x.jpg", "data", False),
        ("other/dogs.zip", "data", False),
        ("datasets/dogs.zip", "artifacts", False),
    ],
)
def test_dataset_rule(key, bucket, matches):
    assert pattern_matches(DATASET_RULE, _event(key, bucket=bucket)) is matches


def test_operators():
    event = {"a": "Hello", "n": 5, "ip": "10.0.0.7", "list": ["x", "y"], "nested": {"b": True}}
    assert pattern_matches({"a": [{"prefix": "He"}]}, event)
    assert pattern_matches({"a": [{"prefix": {"equals-ignore-case": "hE"}}]}, event)
    assert not pattern_matches({"a": [{"suffix": "x"}]}, event)
    assert pattern_matches({"a": [{"equals-ignore-case": "hello"}]}, event)
    assert pattern_matches({"a": [{"anything-but": ["Bye"]}]}, event)
    assert not pattern_matches({"a": [{"anything-but": {"prefix": "He"}}]}, event)
    assert pattern_matches({"n": [{"numeric": [">", 0, "<=", 5]}]}, event)
    assert not pattern_matches({"n": [{"numeric": ["<", 5]}]}, event)
    assert pattern_matches({"ip": [{"cidr": "10.0.0.0/24"}]}, event)
    assert pattern_matches({"list": ["y"]}, event)
    assert pattern_matches({"missing": [{"exists": False}]}, event)
    assert not pattern_matches({"missing": [{"exists": True}]}, event)
    assert not pattern_matches({"missing": [{"anything-but": "x"}]}, event)
    assert pattern_matches({"nested": {"b": [True]}}, event)
    assert not pattern_matches({"a": {"b": ["x"]}}, event)
    with pytest.raises(ValueError, match="unsupported"):
        pattern_matches({"a": [{"regex": "."}]}, event)


def test_s3_event_shape_has_fresh_ids():
    first, second = _event("datasets/a.zip"), _event("datasets/a.zip")
    assert first["id"] != second["id"]
    assert first["detail"]["object"] == {
        "key": "datasets/a.zip",
        "size": 10,
        "etag": "abc",
        "version-id": "v1",
        "sequencer": first["detail"]["object"]["sequencer"],
    }
    assert first["detail"]["reason"] == "PutObject"


def _template_rule() -> dict:
    """The StartPipelineFunction rule as template.yaml writes it, its bucket bound to `data`."""
    from stepsage.aws import cfn_yaml

    template = cfn_yaml.load(Path(__file__).resolve().parents[2] / "template.yaml")
    rule = template["Resources"]["StartPipelineFunction"]["Properties"]["Events"]["DatasetUploaded"]
    pattern = json.loads(json.dumps(rule["Properties"]["Pattern"]))
    pattern["detail"]["bucket"]["name"] = ["data"]
    return pattern


def test_the_template_rule_delivers_every_upload_that_starts_a_run_or_gets_a_notice() -> None:
    """Generated keys by class (tests/unit/test_start_pipeline.py): whatever the start Lambda would start
    or explain reaches it through the rule as the local dispatcher (and EventBridge) applies it, and a folder
    upload's own objects never invoke it."""
    from events_fixture import load_lambda_module
    from test_start_pipeline import FOLDER_OBJECTS, generated_keys

    trigger = load_lambda_module("start_pipeline", "trigger")
    rule = _template_rule()
    checked = 0
    for keys in generated_keys().values():
        for key in keys:
            acts = trigger.plan_start("data", key, "v1") is not None or trigger.refusal(key) is not None
            if acts:
                assert pattern_matches(rule, _event(key)), key
                checked += 1
    assert checked >= 120
    for key in FOLDER_OBJECTS + [f"datasets/dogs/train/{c}/{i}.jpg" for c in "ab" for i in range(50)]:
        assert not pattern_matches(rule, _event(key)), key
    assert not pattern_matches(rule, _event("datasets/dogs.zip", bucket="artifacts"))
