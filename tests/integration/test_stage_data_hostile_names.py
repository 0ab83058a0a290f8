"""Hostile names, clutter and layouts staged end to end against moto's S3, as a zip and as a folder upload:
never a crash, a silent change of data, a write outside the run's prefix, or a touched upload."""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from conftest_stage_data import RawEntry, image_bytes, load_event, raw_zip
from dataset_errors import DatasetValidationError
from dataset_store import DatasetStore
from stage import StagingSettings, stage_dataset
from stage_request import StageDataEvent
from staging import StagingLimits

from contracts import datasets, junk

pytestmark = pytest.mark.integration

ZIP_EVENT = load_event("stage_data")
FOLDER_EVENT = load_event("stage_data_folder")
DATA = ZIP_EVENT["bucket"]
ARTIFACTS = "stepsage-artifacts-hostile"
NFC = unicodedata.normalize


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=DATA)
        client.put_bucket_versioning(Bucket=DATA, VersioningConfiguration={"Status": "Enabled"})
        client.create_bucket(Bucket=ARTIFACTS)
        yield client


def images(labels: tuple[str, ...], n: int = 5, split: str = "train/", top: str = "") -> dict[str, bytes]:
    return {
        f"{top}{split}{label}/{label}_{i}.jpg": image_bytes((37 * li % 256, 23 * i % 256, 90), (8 + i, 8))
        for li, label in enumerate(labels)
        for i in range(n)
    }


def stage(s3: Any, kind: str, files: dict[str, bytes], zip_key: str = "datasets/dogs.zip") -> dict[str, Any]:
    """Upload `files` as a zip or a folder, stage them, and check the invariants that hold either way."""
    uploads: dict[str, str] = {}
    if kind == "zip":
        # Written field by field: zipfile cuts names at a NUL, which would hide that hostile case.
        archive = raw_zip(RawEntry(name, payload=body) for name, body in files.items())
        uploads[zip_key] = s3.put_object(Bucket=DATA, Key=zip_key, Body=archive)["VersionId"]
        event = StageDataEvent.model_validate({**ZIP_EVENT, "key": zip_key, "version_id": uploads[zip_key]})
    else:
        for name, body in [*files.items(), (datasets.READY_MARKER, b"")]:
            key = f"datasets/dogs/{name}"
            uploads[key] = s3.put_object(Bucket=DATA, Key=key, Body=body)["VersionId"]
        event = StageDataEvent.model_validate(FOLDER_EVENT)
    before = _uploads(s3, uploads)
    settings = StagingSettings(ARTIFACTS, limits=StagingLimits(), concurrency=2)
    try:
        result: dict[str, Any] = {
            "output": stage_dataset(event, settings, DatasetStore(s3), seconds_left=lambda: 900.0).output
        }
    except DatasetValidationError as e:  # the one error a bad dataset may give
        result = {"error": e}
    assert _uploads(s3, uploads) == before, "the upload was touched"
    staged = _staged(s3)
    prefix = f"staged/dogs/{event.execution_name}/"
    assert all(key.startswith(prefix) for key in staged), "a write outside the run's prefix"
    if "error" in result:
        assert staged == {}, "a refused dataset left staged objects"
        return result
    manifest = json.loads(staged[prefix + "manifest.json"])
    assert set(staged) == {prefix + f["path"] for f in manifest["files"]} | {prefix + "manifest.json"}
    for file in manifest["files"]:
        body = staged[prefix + file["path"]]
        assert hashlib.sha256(body).hexdigest() == file["sha256"], "a digest that is not the staged bytes"
        assert body == files[file["source"]], "staged bytes that are not the uploaded image"
        assert file["path"] == NFC("NFC", file["path"]) and file["label"] in manifest["labels"]
    result["manifest"] = manifest
    return result


def _uploads(s3: Any, uploads: dict[str, str]) -> dict[str, tuple[str, bytes]]:
    """Each uploaded object's current version and bytes (keys may hold characters S3 listings cannot)."""
    current = {}
    for key, version in uploads.items():
        head = s3.head_object(Bucket=DATA, Key=key)
        current[key] = (
            head.get("VersionId"),
            s3.get_object(Bucket=DATA, Key=key, VersionId=version)["Body"].read(),
        )
    return current


def _staged(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=ARTIFACTS).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=ARTIFACTS, Key=item["Key"])["Body"].read() for item in listed}


KINDS = ["zip", "folder"]
NON_ASCII = ("café", "ねこ", "Größe", "고양이", "собака", "🐱")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_non_ascii_class_names_are_staged_nfc(s3: Any, kind: str, form: str) -> None:
    files = images(tuple(NFC(form, label) for label in NON_ASCII))
    result = stage(s3, kind, files)
    assert result["manifest"]["labels"] == sorted(NFC("NFC", label) for label in NON_ASCII)
    assert result["manifest"]["counts"]["train"] + result["manifest"]["counts"]["valid"] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_clutter_everywhere_is_skipped_and_counted(s3: Any, kind: str) -> None:
    files = images(("a", "b"))
    clutter = {}
    for name in junk.JUNK_NAMES:
        clutter[f"train/a/{name}"] = b"x"
        clutter[f"{name}/inside.jpg"] = b"y"
    clutter.update({"train/b/._a_0.jpg": b"\x00", "README.md": b"# about", "LICENSE": b"CC-BY"})
    result = stage(s3, kind, {**files, **clutter})
    assert result["manifest"]["ignored_count"] == len(clutter)
    assert {f["source"] for f in result["manifest"]["files"]} == set(files)


@pytest.mark.parametrize("kind", KINDS)
def test_a_flat_imagefolder_is_staged_and_split(s3: Any, kind: str) -> None:
    result = stage(s3, kind, images(("cat", "dog"), n=10, split="", top="PetImages/"))
    assert result["manifest"]["layout"] == "flat"
    assert result["manifest"]["counts"] == {"train": 16, "valid": 2, "test": 2}


@pytest.mark.parametrize("suffix", [".ZIP", ".Zip", ".zIp"])
def test_a_zip_in_any_case_stages(s3: Any, suffix: str) -> None:
    result = stage(s3, "zip", images(("a", "b")), zip_key=f"datasets/dogs{suffix}")
    assert result["manifest"]["source"]["key"] == f"datasets/dogs{suffix}"


def _duplicate_nfc(files: dict[str, bytes]) -> None:
    files["train/café/x.jpg"] = image_bytes((1, 2, 3))
    files[NFC("NFD", "train/café/x.jpg")] = image_bytes((3, 2, 1))


def _duplicate_path(files: dict[str, bytes]) -> None:
    files["train/a//a_0.jpg"] = image_bytes((9, 9, 9))


def _one_class(files: dict[str, bytes]) -> None:
    for name in [n for n in files if "/b/" in n]:
        del files[name]


REFUSALS: list[tuple[str, Callable[[dict[str, bytes]], None], str]] = [
    ("same file in NFC and NFD", _duplicate_nfc, "same file once their paths are normalized"),
    ("same path with '//'", _duplicate_path, "same file once their paths are normalized"),
    ("one class", _one_class, "at least two class"),
    *[
        (f"U+{ord(c):04X} in a class name", lambda f, c=c: f.update({f"train/x{c}y/1.jpg": b"1"}), "control")
        for c in ("\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\u2029")
    ],
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("case", "spoil", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_hostile_datasets_are_refused_staging_nothing(
    s3: Any, kind: str, case: str, spoil: Callable[[dict[str, bytes]], None], message: str
) -> None:
    files = images(("a", "b"))
    spoil(files)
    result = stage(s3, kind, files)
    assert "error" in result and message in str(result["error"]), (case, result)


def test_nfc_class_names_reach_training_as_staged(s3: Any, tmp_path: Path) -> None:
    """Staging -> S3 keys -> the emulator's channel download -> train.py's scan: the same NFC class names,
    in the same index order as the manifest's labels, and the same dataset hash."""
    from stepsage.local.sagemaker.storage import S3Storage

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
    try:
        import data as training_data
    finally:
        sys.path.pop(0)
    files = images(tuple(NFC("NFD", label) for label in NON_ASCII), n=10)  # as a Mac writes them
    manifest = stage(s3, "zip", files)["manifest"]
    storage = S3Storage(None, "us-east-1")
    prefix = f"staged/dogs/{ZIP_EVENT['execution_name']}/"
    found = []
    for channel in datasets.SPLITS:
        root = tmp_path / channel
        storage.download_prefix(f"s3://{ARTIFACTS}/{prefix}{channel}/", root)
        split = training_data.scan_split(root, channel)
        assert split.classes == manifest["labels"] == sorted(NFC("NFC", label) for label in NON_ASCII)
        found += datasets.channel_files(channel, root)
    assert datasets.dataset_hash(found) == manifest["dataset_hash"]
