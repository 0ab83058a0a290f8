"""stage_data against moto's S3: staging, ranged reads, bounded memory, and all-or-nothing rejection."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from conftest_stage_data import (
    RawEntry,
    dataset_files,
    deflate,
    good_raw_entries,
    image_bytes,
    load_app,
    load_event,
    png_claiming,
    raw_zip,
    zip_bytes,
)
from dataset_errors import DatasetTooLargeError, DatasetValidationError, StagingSourceError
from dataset_store import DatasetStore
from stage import StagingSettings, stage_dataset
from stage_request import StageDataEvent
from staging import StagingLimits, dataset_hash

pytestmark = pytest.mark.integration

EVENT = load_event("stage_data")
DATA_BUCKET = EVENT["bucket"]
ARTIFACTS = "stepsage-artifacts-test"


@dataclass
class GetLog:
    ranges: list[str | None] = field(default_factory=list)

    def record(self, params: dict[str, Any], **_: Any) -> None:
        self.ranges.append(params.get("Range"))

    @property
    def bytes_requested(self) -> int:
        total = 0
        for header in self.ranges:
            assert header is not None
            start, end = header.removeprefix("bytes=").split("-")
            total += int(end) - int(start) + 1
        return total


def make_buckets(s3: Any) -> None:
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=ARTIFACTS)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        make_buckets(client)
        yield client


def upload(s3: Any, key: str, body: bytes) -> str:
    return s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=body)["VersionId"]


def event_for(version_id: str | None, **changes: Any) -> StageDataEvent:
    return StageDataEvent.model_validate({**EVENT, "version_id": version_id, **changes})


def settings(**limits: Any) -> StagingSettings:
    return StagingSettings(ARTIFACTS, limits=StagingLimits(**limits), block_bytes=256 * 1024, concurrency=4)


def staged_keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=ARTIFACTS).get("Contents", [])]


def read(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def plenty_of_time() -> float:
    return 900.0


def assert_staged_matches_manifest(
    s3: Any, output: dict[str, Any], sources: dict[str, bytes]
) -> dict[str, Any]:
    prefix = output["manifest"].removeprefix(f"s3://{ARTIFACTS}/").removesuffix("manifest.json")
    manifest = json.loads(read(s3, ARTIFACTS, prefix + "manifest.json"))
    listed = {file["path"] for file in manifest["files"]}
    assert set(staged_keys(s3)) == {prefix + path for path in listed} | {prefix + "manifest.json"}
    for file in manifest["files"]:
        body = read(s3, ARTIFACTS, prefix + file["path"])
        assert hashlib.sha256(body).hexdigest() == file["sha256"] and len(body) == file["size"]
        assert body == sources[file["source"]]
        assert file["path"] == f"{file['channel']}/{file['label']}/{file['source'].rsplit('/', 1)[1]}"
    assert output["dataset_hash"] == manifest["dataset_hash"]
    assert output["dataset_hash"] == dataset_hash(
        (file["path"], file["sha256"]) for file in manifest["files"]
    )
    assert output["counts"] == manifest["counts"]
    for channel, uri in output["channels"].items():
        assert uri == f"s3://{ARTIFACTS}/{prefix}{channel}/"
    return manifest


# --- the handler with the sample events ---


@dataclass
class FakeLambdaContext:
    function_name: str = "stage-data"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stage-data"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 840_000


def test_handler_stages_the_sample_event_zip(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACTS_BUCKET", ARTIFACTS)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "stepsage-test")
    files = dataset_files(top="dogImages")
    version = upload(s3, EVENT["key"], zip_bytes(files, dirs=["dogImages/"]))
    output = load_app().lambda_handler({**EVENT, "version_id": version}, FakeLambdaContext())
    assert output["labels"] == ["001.Affenpinscher", "002.Afghan_hound"] and output["num_classes"] == 2
    assert output["counts"] == {"train": 12, "valid": 4, "test": 4}
    assert output["split_created"] is False
    assert output["manifest"] == f"s3://{ARTIFACTS}/staged/dogs/{EVENT['execution_name']}/manifest.json"
    assert set(output) == {
        "dataset_name", "dataset_hash", "labels", "num_classes", "counts", "channels", "manifest",
        "split_created",
    }  # fmt: skip
    manifest = assert_staged_matches_manifest(s3, output, files)
    assert manifest["top_level_folder"] == "dogImages" and manifest["source"]["version_id"] == version


def test_handler_errors_carry_the_typed_name(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACTS_BUCKET", ARTIFACTS)
    version = upload(s3, EVENT["key"], b"this is not a zip")
    with pytest.raises(DatasetValidationError) as caught:
        load_app().lambda_handler({**EVENT, "version_id": version}, FakeLambdaContext())
    assert type(caught.value).__name__ == "DatasetValidationError"


@pytest.mark.parametrize("top", [None, "dogImages"])
def test_a_train_only_zip_is_split_per_class(s3: Any, top: str | None) -> None:
    files = dataset_files(splits=("train",), per_class={"train": 10}, top=top)
    version = upload(s3, EVENT["key"], zip_bytes(files))
    result = stage_dataset(event_for(version), settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    assert result.output["split_created"] is True
    assert result.output["counts"] == {"train": 16, "valid": 2, "test": 2}
    manifest = assert_staged_matches_manifest(s3, result.output, files)
    per_class = {(file["label"], file["channel"]) for file in manifest["files"]}
    assert len(per_class) == 6  # every class lands in every channel


def test_a_zip_with_valid_but_no_test_gets_only_test_carved(s3: Any) -> None:
    files = dataset_files(splits=("train", "valid"), per_class={"train": 10, "valid": 2})
    version = upload(s3, EVENT["key"], zip_bytes(files))
    result = stage_dataset(event_for(version), settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    assert result.output["counts"] == {"train": 18, "valid": 4, "test": 2}
    manifest = assert_staged_matches_manifest(s3, result.output, files)
    assert manifest["split"]["carved_channels"] == ["test"]


def test_a_folder_upload_closed_by_ready_is_staged_by_copy(s3: Any) -> None:
    folder_event = load_event("stage_data_folder")
    files = dataset_files(splits=("train", "valid"), per_class={"train": 5, "valid": 2})
    for name, body in files.items():
        upload(s3, f"datasets/dogs/{name}", body)
    upload(s3, "datasets/dogs/train/.DS_Store", b"junk")
    upload(s3, "datasets/dogs/_READY", b"")
    event = StageDataEvent.model_validate(folder_event)
    result = stage_dataset(event, settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    assert result.output["counts"] == {"train": 8, "valid": 4, "test": 2}
    manifest = assert_staged_matches_manifest(s3, result.output, files)
    assert manifest["ignored"] == [{"path": "train/.DS_Store", "reason": "macOS folder metadata"}]
    assert manifest["source"]["kind"] == "folder"


def test_a_bad_image_in_a_folder_upload_stages_nothing(s3: Any) -> None:
    files = dataset_files(splits=("train", "valid", "test"))
    files["train/002.Afghan_hound/fake.jpg"] = b"not a jpeg at all"
    for name, body in files.items():
        upload(s3, f"datasets/dogs/{name}", body)
    upload(s3, "datasets/dogs/_READY", b"")
    event = StageDataEvent.model_validate(load_event("stage_data_folder"))
    with pytest.raises(DatasetValidationError, match=r"fake\.jpg is not an image"):
        stage_dataset(event, settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    assert staged_keys(s3) == []


# --- ranged reads ---


def test_ranged_reads_skip_junk_and_never_fetch_the_whole_archive(s3: Any) -> None:
    noise = random.Random(1)
    files = dataset_files(splits=("train",), per_class={"train": 4})
    junk = {f"__MACOSX/train/._big{index}.jpg": noise.randbytes(1024 * 1024) for index in range(4)}
    names = list(files)
    ordered = {
        **{name: files[name] for name in names[:4]},
        **junk,
        **{name: files[name] for name in names[4:]},
    }
    archive = zip_bytes(ordered)
    version = upload(s3, EVENT["key"], archive)
    log = GetLog()
    s3.meta.events.register("before-parameter-build.s3.GetObject", log.record)
    try:
        result = stage_dataset(event_for(version), settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.GetObject", log.record)
    assert (
        result.output["counts"]["train"] + result.output["counts"]["valid"] + result.output["counts"]["test"]
        == 8
    )
    assert all(header is not None for header in log.ranges), log.ranges
    assert len(log.ranges) == result.ranged_requests <= 4
    assert log.bytes_requested == result.ranged_bytes < len(archive) / 20


def test_a_rejected_central_directory_costs_one_tail_read(s3: Any) -> None:
    noise = random.Random(2)
    entries = [RawEntry(f"train/a/{index}.jpg", noise.randbytes(512 * 1024)) for index in range(6)]
    entries.append(RawEntry("train/a/link.jpg", b"/etc/passwd", external_attr=0o120777 << 16))
    archive = raw_zip(entries)
    version = upload(s3, EVENT["key"], archive)
    log = GetLog()
    s3.meta.events.register("before-parameter-build.s3.GetObject", log.record)
    with pytest.raises(DatasetValidationError, match="symbolic link"):
        stage_dataset(event_for(version), settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    assert len(log.ranges) == 1 and log.bytes_requested < len(archive) / 30


# --- all or nothing ---

BOMB = b"\x00" * (4 * 1024 * 1024)
LINK = 0o120777 << 16


def with_bad(entry: RawEntry) -> bytes:
    return raw_zip([*good_raw_entries(), entry])


def zipped(files: dict[str, bytes], **options: Any) -> bytes:
    return zip_bytes(files, **options)


TRAIN_ONLY = dataset_files(splits=("train",), per_class={"train": 3})
REJECTED = {
    "not a zip": (b"GIF89a this is not a zip" * 100, "not a zip"),
    "zip-slip": (with_bad(RawEntry("train/001.Affenpinscher/../../../evil.jpg", b"x")), "zip-slip"),
    "absolute": (with_bad(RawEntry("/etc/cron.d/evil.jpg", b"x")), "absolute"),
    "symlink": (
        with_bad(RawEntry("train/001.Affenpinscher/l.jpg", b"/etc", external_attr=LINK)),
        "symbolic link",
    ),
    "encrypted": (with_bad(RawEntry("train/001.Affenpinscher/e.jpg", b"\x00" * 30, flags=1)), "encrypted"),
    "bomb": (
        with_bad(
            RawEntry("train/001.Affenpinscher/b.jpg", deflate(BOMB), real=BOMB, method=8, file_size=900)
        ),
        "zip bomb",
    ),
    "too many entries": (zipped({f"train/a/{index}.jpg": b"x" for index in range(40)}), "limit is 30"),
    "fake jpg": (
        with_bad(RawEntry("train/002.Afghan_hound/fake.jpg", b"<html></html>")),
        "fake.jpg is not an image",
    ),
    "pixel bomb": (
        with_bad(RawEntry("train/002.Afghan_hound/huge.png", png_claiming(100_000, 100_000))),
        "decompression bomb",
    ),
    "empty class": (
        zipped(TRAIN_ONLY, dirs=["train/003.Akita/"]),
        "class '003.Akita' in train/ has no images",
    ),
    "mismatched classes": (
        zipped({**TRAIN_ONLY, "valid/009.Beagle/x.jpg": image_bytes()}),
        "missing from valid/",
    ),
    "no train": (zipped(dataset_files(splits=("valid", "test"))), "no train/ folder"),
    "bzip2": (zipped(TRAIN_ONLY, compression=12), "bzip2"),
    # Formats the endpoint cannot decode: refused naming the file and the format, by name or by content.
    "heic by name": (
        with_bad(
            RawEntry("train/002.Afghan_hound/IMG_0001.HEIC", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)
        ),
        r"IMG_0001\.HEIC' is HEIC/HEIF, a format the endpoint cannot decode",
    ),
    "jpeg 2000 named .jpg": (
        with_bad(
            RawEntry("train/002.Afghan_hound/scan.jpg", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 40)
        ),
        r"scan\.jpg is JPEG 2000, a format the endpoint cannot decode",
    ),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_rejected_datasets_stage_nothing_and_leave_the_source_alone(s3: Any, case: str) -> None:
    archive, message = REJECTED[case]
    version = upload(s3, EVENT["key"], archive)
    with pytest.raises(DatasetValidationError, match=message) as caught:
        stage_dataset(
            event_for(version), settings(max_entries=30, max_entry_bytes=1024 * 1024), DatasetStore(s3),
            seconds_left=plenty_of_time,
        )  # fmt: skip
    assert type(caught.value).__name__ in ("DatasetValidationError", "DatasetTooLargeError")
    assert staged_keys(s3) == []
    versions = s3.list_object_versions(Bucket=DATA_BUCKET)["Versions"]
    assert [(item["Key"], item["VersionId"]) for item in versions] == [(EVENT["key"], version)]
    assert read(s3, DATA_BUCKET, EVENT["key"]) == archive


@pytest.mark.parametrize("name", ["my data", "x" * 101, "-dash-first"])
def test_a_dataset_name_the_url_could_not_serve_is_refused_before_reading(s3: Any, name: str) -> None:
    key = f"datasets/{name}.zip"
    version = upload(s3, key, zip_bytes(dataset_files()))
    with pytest.raises(
        DatasetValidationError, match=r"cannot be served at POST /<name>: use 1 to 100 letters"
    ):
        stage_dataset(
            event_for(version, key=key, dataset_name=name), settings(), DatasetStore(s3),
            seconds_left=plenty_of_time,
        )  # fmt: skip
    assert staged_keys(s3) == []


def test_a_write_failure_midway_deletes_what_was_written(s3: Any) -> None:
    version = upload(s3, EVENT["key"], zip_bytes(dataset_files()))
    puts = []

    def fail_on_the_fifth_put(params: dict[str, Any], **_: Any) -> None:
        puts.append(params["Key"])
        if len(puts) == 5:
            raise ConnectionError("network went away")

    s3.meta.events.register("before-parameter-build.s3.PutObject", fail_on_the_fifth_put)
    with pytest.raises(ConnectionError):
        stage_dataset(event_for(version), settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    assert len(puts) >= 5 and staged_keys(s3) == []


def test_a_dataset_over_the_total_cap_is_refused_before_reading_images(s3: Any) -> None:
    files = dataset_files()
    version = upload(s3, EVENT["key"], zip_bytes(files))
    log = GetLog()
    s3.meta.events.register("before-parameter-build.s3.GetObject", log.record)
    with pytest.raises(DatasetTooLargeError, match="MAX_TOTAL_BYTES"):
        stage_dataset(
            event_for(version), settings(max_total_bytes=2000), DatasetStore(s3), seconds_left=plenty_of_time
        )
    assert len(log.ranges) == 1 and staged_keys(s3) == []


def test_running_out_of_lambda_time_stages_nothing(s3: Any) -> None:
    version = upload(s3, EVENT["key"], zip_bytes(dataset_files()))
    clock = iter([900.0, 900.0, 900.0, 30.0])
    with pytest.raises(DatasetTooLargeError, match="ran out of Lambda time after 2 of 20"):
        stage_dataset(
            event_for(version), settings(), DatasetStore(s3), seconds_left=lambda: next(clock, 30.0)
        )
    assert staged_keys(s3) == []


def overwrite_after_head(s3: Any, bucket: str) -> None:
    def overwrite(**_: Any) -> None:
        s3.meta.events.unregister("after-call.s3.HeadObject", overwrite)
        s3.put_object(Bucket=bucket, Key=EVENT["key"], Body=zip_bytes(dataset_files(labels=("x", "y"))))

    s3.meta.events.register("after-call.s3.HeadObject", overwrite)


def test_an_overwrite_during_staging_still_stages_the_described_version(s3: Any) -> None:
    files = dataset_files()
    first = upload(s3, EVENT["key"], zip_bytes(files))
    overwrite_after_head(s3, DATA_BUCKET)
    result = stage_dataset(event_for(None), settings(), DatasetStore(s3), seconds_left=plenty_of_time)
    manifest = assert_staged_matches_manifest(s3, result.output, files)
    assert manifest["source"]["version_id"] == first and result.output["labels"][0] == "001.Affenpinscher"


def test_an_overwrite_in_an_unversioned_bucket_is_detected(s3: Any) -> None:
    s3.create_bucket(Bucket="stepsage-unversioned")
    s3.put_object(Bucket="stepsage-unversioned", Key=EVENT["key"], Body=zip_bytes(dataset_files()))
    overwrite_after_head(s3, "stepsage-unversioned")
    with pytest.raises(StagingSourceError, match="changed while it was being staged"):
        stage_dataset(
            event_for(None, bucket="stepsage-unversioned"),
            settings(),
            DatasetStore(s3),
            seconds_left=plenty_of_time,
        )
    assert staged_keys(s3) == []


# --- memory ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server_s3() -> Iterator[Any]:
    """S3 in another process, so tracemalloc here sees only stage_data's memory, not the fake's storage."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        make_buckets(client)
        yield client
    finally:
        server.terminate()
        server.wait(timeout=10)


def noise_bmp(seed: int, side: int = 512) -> bytes:
    pixels = random.Random(seed).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buffer, format="BMP")
    return buffer.getvalue()


def test_memory_stays_within_the_caps_not_the_archive(moto_server_s3: Any) -> None:
    s3 = moto_server_s3
    files = {
        f"train/{label}/{index}.bmp": noise_bmp(index * 7 + len(label))
        for label in ("a", "b")
        for index in range(16)
    }
    archive = zip_bytes(files, compression=0)
    version = upload(s3, EVENT["key"], archive)
    entry_cap = 1024 * 1024
    staging_settings = StagingSettings(
        ARTIFACTS, limits=StagingLimits(max_entry_bytes=entry_cap), block_bytes=entry_cap, concurrency=2
    )
    store = DatasetStore(s3)
    tracemalloc.start()
    try:
        result = stage_dataset(event_for(version), staging_settings, store, seconds_left=plenty_of_time)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.images == 32 and len(archive) > 24 * 1024 * 1024
    # One block, one entry and its copies: a small multiple of the caps, far below the 25 MB archive.
    print(f"stage_data peak traced memory {peak} bytes for a {len(archive)}-byte archive")
    assert peak < 6 * entry_cap, f"peak {peak} bytes"
    assert os.environ.get("AWS_ENDPOINT_URL") is None
