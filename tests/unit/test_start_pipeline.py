"""start_pipeline's decisions and the naming rules it relies on, with no AWS."""

from __future__ import annotations

import itertools

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


# ---- every upload under datasets/ either starts a run or says why not (generated keys, by class) ---------

ZIP_CASINGS = sorted({"".join(c.upper() if bit else c for c, bit in zip(".zip", bits, strict=True))
                      for bits in itertools.product((0, 1), repeat=4)})  # fmt: skip
VALID_NAMES = ["digits", "dogImages", "a", "x" * 100, "A.b_c-9", "2024.v1"]
BAD_NAMES = [
    "my data",
    "-lead",
    "_under",
    "x" * 101,
    "日本語",
    "résumé",
    "a\tb",
    "a\nb",
    "a+b",
    "a@b",
    "a%20b",
]
OTHER_ARCHIVES = [".tar.gz", ".TGZ", ".tar", ".7z", ".RAR", ".tar.bz2", ".tar.xz", ".gz", ".zipx", ".tar.zst"]
STRAY_FILES = ["notes.txt", "cat.jpg", "_READY", "_ready", "README.md", "labels.csv", "digits"]
TOP_CLUTTER = [
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "._digits.zip",
    ".hidden.zip",
    "Icon\r",
    "~$notes.docx",
]
FOLDER_OBJECTS = [
    "datasets/dogs/train/001.A/x.jpg",
    "datasets/dogs/dogImages/valid/001.A/x.png",
    "datasets/dogs/cat/1.jpg",
    "datasets/dogs/x.jpg",
    "datasets/dogs/README.md",
    "datasets/dogs/train/.DS_Store",
    "datasets/dogs/__MACOSX/train/._x.jpg",
    "datasets/dogs/train/a/_ready.txt",
]


def generated_keys() -> dict[str, list[str]]:
    return {
        "start": [f"datasets/{name}{ext}" for name in VALID_NAMES for ext in ZIP_CASINGS]
        + [f"datasets/{name}/_READY" for name in VALID_NAMES],
        "bad_name": [f"datasets/{name}{ext}" for name in BAD_NAMES for ext in (".zip", ".ZIP")]
        + [f"datasets/{name}/_READY" for name in BAD_NAMES],
        "other_archive": [f"datasets/digits{ext}" for ext in OTHER_ARCHIVES],
        "stray": [f"datasets/{name}" for name in STRAY_FILES] + ["datasets/.zip", "datasets/.ZIP"],
        "marker_lookalike": [f"datasets/dogs/{m}" for m in ("_ready", "_Ready", "_READY.txt", "_READY.md")]
        + ["datasets/dogs/train/_READY", "datasets/dogs/train/a/_ready", "datasets//_READY"],
        "nested_zip": ["datasets/dogs/inner.zip", "datasets/dogs/train/a/x.ZIP", "datasets//x.zip"],
        "wrong_prefix_case": [
            "Datasets/digits.zip",
            "DATASETS/digits.ZIP",
            "Datasets/dogs/_READY",
            "DataSets/notes.txt",
        ],
        "silent": [f"datasets/{name}" for name in TOP_CLUTTER]
        + FOLDER_OBJECTS
        + ["datasets/", "datasets/dogs/", "other/digits.zip", "README.md", "Datasets/dogs/train/a/x.jpg"],
    }


def test_every_valid_dataset_upload_starts_a_run_whatever_the_case_of_zip() -> None:
    for key in generated_keys()["start"]:
        plan = trigger.plan_start("bucket", key, "v1")
        assert plan is not None, key
        assert plan.payload["key"] == key and key.startswith(f"datasets/{plan.payload['dataset_name']}")
        assert trigger.refusal(key) is None


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("bad_name", "cannot be served at POST /<name>"),
        ("other_archive", "only zip archives start a run"),
        ("stray", "datasets/"),
        ("marker_lookalike", "_READY"),
        ("nested_zip", "zip inside a folder"),
        ("wrong_prefix_case", "keys are case-sensitive"),
    ],
)
def test_uploads_that_cannot_start_a_run_say_why(kind: str, says: str) -> None:
    keys = generated_keys()[kind]
    assert len(keys) >= 3
    for key in keys:
        assert trigger.plan_start("bucket", key, "v1") is None, key
        reason = trigger.refusal(key)
        assert reason is not None and says in reason, (key, reason)
        message = trigger.notice_message("bucket", key, reason)
        assert repr(key) in message and "datasets/<name>.zip" in message
        assert not any(c in message.replace("\n", "") for c in "\r\t\x00")  # the key is shown escaped


def test_clutter_placeholders_outside_keys_and_folder_objects_are_silent() -> None:
    for key in generated_keys()["silent"]:
        assert trigger.plan_start("bucket", key, "v1") is None, key
        assert trigger.refusal(key) is None, key


def test_a_bad_name_notice_suggests_a_valid_one() -> None:
    assert "such as 'my-data'" in (trigger.refusal("datasets/my data.zip") or "")


class FakeSfn:
    def __init__(self) -> None:
        self.started: list[tuple[str, str, dict]] = []

    def start_once(self, arn: str, name: str, payload: dict):
        self.started.append((arn, name, payload))
        return type("Started", (), {"duplicate": False, "execution_arn": f"{arn}:{name}"})()


class FakeNotices:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, str]] = []

    def publish(self, topic: str, subject: str, message: str) -> str:
        self.published.append((topic, subject, message))
        return "id"


def test_start_for_upload_starts_notifies_or_ignores_and_never_both() -> None:
    settings = trigger.TriggerSettings("arn:sm", "arn:topic")
    for kind, keys in generated_keys().items():
        for key in keys:
            sfn, notices = FakeSfn(), FakeNotices()
            outcome = trigger.start_for_upload("bucket", key, "v1", settings, sfn, notices)
            expected = {"start": "started", "silent": "ignored"}.get(kind, "refused")
            assert outcome["status"] == expected, (key, outcome)
            assert len(sfn.started) == (expected == "started")
            assert len(notices.published) == (expected == "refused")
            for topic, subject, _ in notices.published:
                assert topic == "arn:topic" and subject.isascii() and len(subject) < 100
