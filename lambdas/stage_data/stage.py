"""Stage one uploaded dataset: validate all of it first, then write channels and a manifest, or nothing."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from archive import InflateLimits, ZipEntry, entry_span, read_central_directory, read_entry
from dataset_errors import DatasetTooLargeError, DatasetValidationError
from dataset_store import DatasetStore
from image_check import inspect_image
from ranged import DEFAULT_BLOCK_BYTES, RangedFile
from stage_request import READY_MARKER, StageDataEvent
from staging import (
    TIME_MARGIN_SECONDS,
    LayoutPlan,
    ManifestContext,
    PlannedImage,
    SplitSettings,
    StagedImage,
    StagingLimits,
    Workload,
    build_manifest,
    check_capacity,
    plan_channels,
    plan_layout,
    staged_path,
)

from contracts import datasets
from stepsage_lambda.payloads import StagedDataset
from stepsage_lambda.settings import declared

SecondsLeft = Callable[[], float]


@dataclass(frozen=True)
class StagingSettings:
    artifacts_bucket: str
    limits: StagingLimits = field(default_factory=StagingLimits)
    split: SplitSettings = field(default_factory=SplitSettings)
    block_bytes: int = DEFAULT_BLOCK_BYTES
    concurrency: int = 8
    tmp_dir: str | None = None

    ENV_VARS: ClassVar[tuple[str, ...]] = (
        "ARTIFACTS_BUCKET",
        *StagingLimits.ENV_VARS,
        *SplitSettings.ENV_VARS,
        "RANGE_BLOCK_BYTES",
        "STAGING_CONCURRENCY",
        "STAGING_TMP_DIR",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StagingSettings:
        env = declared(env, cls)
        return cls(
            artifacts_bucket=env["ARTIFACTS_BUCKET"],
            limits=StagingLimits.from_env(env),
            split=SplitSettings.from_env(env),
            block_bytes=int(env.get("RANGE_BLOCK_BYTES", DEFAULT_BLOCK_BYTES)),
            concurrency=int(env.get("STAGING_CONCURRENCY", 8)),
            tmp_dir=env.get("STAGING_TMP_DIR") or None,
        )


@dataclass(frozen=True)
class StagingResult:
    dataset: StagedDataset
    images: int
    staged_bytes: int
    ignored: int
    ranged_requests: int = 0
    ranged_bytes: int = 0

    @property
    def output(self) -> dict[str, Any]:
        """The handler's return value, `$.dataset` in the state machine."""
        return self.dataset.model_dump(mode="json")


def stage_dataset(
    event: StageDataEvent, settings: StagingSettings, store: DatasetStore, *, seconds_left: SecondsLeft
) -> StagingResult:
    """Validate the upload named by `event` and publish it under staged/<name>/<execution>/."""
    if not datasets.is_valid_name(event.dataset_name):
        raise DatasetValidationError(
            f"the dataset name {event.dataset_name[:120]!r} (from {event.key[:200]!r}) cannot be served at "
            f"POST /<name>: use {datasets.NAME_RULE}, then upload it again"
        )
    if event.kind == "zip":
        return _stage_zip(event, settings, store, seconds_left)
    return _stage_folder(event, settings, store, seconds_left)


def _stage_zip(
    event: StageDataEvent, settings: StagingSettings, store: DatasetStore, seconds_left: SecondsLeft
) -> StagingResult:
    limits = settings.limits
    source = store.describe_source(event.bucket, event.key, event.version_id)
    archive = RangedFile(
        lambda start, end: store.read_range(event.bucket, source, start, end),
        source.size,
        block_bytes=settings.block_bytes,
    )
    directory = read_central_directory(archive, max_entries=limits.max_entries)
    plan = plan_layout((entry.name, entry.is_dir) for entry in directory.entries)
    channels = plan_channels(plan, settings.split)
    by_name = {entry.name: entry for entry in directory.entries}
    members = sorted(
        ((image, by_name[image.source_name]) for image in plan.images), key=lambda m: m[1].header_offset
    )
    for image, entry in members:
        _check_declared_size(image.source_name, entry.file_size, limits)
    spans = [entry_span(entry) for _, entry in members]
    workload = Workload(
        "zip",
        len(members),
        sum(entry.file_size for _, entry in members),
        sum(end - start for start, end in spans) + directory.size,
    )
    with tempfile.TemporaryDirectory(prefix="stage-", dir=settings.tmp_dir) as tmp:
        spool = Path(tmp)
        check_capacity(
            workload, limits, seconds_left=seconds_left(), tmp_free_bytes=shutil.disk_usage(spool).free
        )
        archive.set_spans(spans)
        staged: list[StagedImage] = []
        # Spooled by position, not by name: /tmp's file system may fold case or normalize Unicode (a
        # laptop running the local cloud), which would merge `Cat/x.jpg` and `cat/x.jpg` and break the
        # manifest's digests. The name lives only in the S3 key.
        spooled: dict[str, Path] = {}
        total = 0
        for done, (image, entry) in enumerate(members):
            _check_time(seconds_left, done, len(members))
            data = _inflate(archive, entry, limits, total)
            total += len(data)
            staged_image = _validated(image, channels[image.source_name], data, limits)
            target = spool / f"{done:08d}"
            target.write_bytes(data)
            spooled[staged_image.path] = target
            staged.append(staged_image)
        source_record = {
            "kind": "zip",
            "bucket": event.bucket,
            "key": event.key,
            "version_id": source.version_id,
            "etag": source.etag,
            "size": source.size,
        }

        def write(image: StagedImage, key: str) -> None:
            store.put_file(settings.artifacts_bucket, key, spooled[image.path], image.sha256)

        output = _publish(event, settings, store, plan, staged, source_record, write, seconds_left)
    return StagingResult(
        output, len(staged), total, len(plan.ignored), archive.requests, archive.bytes_fetched
    )


def _inflate(archive: RangedFile, entry: ZipEntry, limits: StagingLimits, total: int) -> bytes:
    left_in_total = limits.max_total_bytes - total
    if left_in_total < limits.max_entry_bytes:
        budget, limit_name = left_in_total, "MAX_TOTAL_BYTES over the whole dataset"
    else:
        budget, limit_name = limits.max_entry_bytes, "MAX_ENTRY_BYTES"
    inflate_limits = InflateLimits(budget, limits.max_compression_ratio, limits.ratio_floor_bytes)
    return read_entry(archive, entry, inflate_limits, limit_name=limit_name)


def _stage_folder(
    event: StageDataEvent, settings: StagingSettings, store: DatasetStore, seconds_left: SecondsLeft
) -> StagingResult:
    limits = settings.limits
    prefix = event.folder_prefix
    store.describe_source(event.bucket, event.key, event.version_id)  # the marker must still be there
    objects = [
        obj
        for obj in store.list_folder(event.bucket, prefix, max_objects=limits.max_entries + 1)
        if obj.key != prefix + READY_MARKER
    ]
    if len(objects) > limits.max_entries:
        raise DatasetValidationError(
            f"folder s3://{event.bucket}/{prefix} has more than {limits.max_entries} objects (MAX_ENTRIES)"
        )
    by_name = {obj.key[len(prefix) :]: obj for obj in objects}
    plan = plan_layout((name, name.endswith("/")) for name in by_name)
    channels = plan_channels(plan, settings.split)
    for image in plan.images:
        _check_declared_size(image.source_name, by_name[image.source_name].size, limits)
    image_bytes = sum(by_name[image.source_name].size for image in plan.images)
    check_capacity(
        Workload("folder", len(plan.images), image_bytes, image_bytes),
        limits,
        seconds_left=seconds_left(),
        tmp_free_bytes=None,
    )

    def validate(image: PlannedImage) -> StagedImage:
        if seconds_left() < TIME_MARGIN_SECONDS:
            raise _out_of_time(len(plan.images))
        data = store.read_capped(event.bucket, by_name[image.source_name], limits.max_entry_bytes)
        if len(data) > limits.max_entry_bytes or len(data) != by_name[image.source_name].size:
            raise DatasetValidationError(
                f"{image.source_name} is not the {by_name[image.source_name].size} bytes S3 listed, or "
                f"exceeds {limits.max_entry_bytes} bytes (MAX_ENTRY_BYTES)",
                entry=image.source_name,
            )
        return _validated(image, channels[image.source_name], data, limits)

    # Each worker holds one image at most, so memory stays within concurrency x MAX_ENTRY_BYTES.
    staged = _run_all(validate, plan.images, settings.concurrency)
    sources = {image.source_name: by_name[image.source_name] for image in plan.images}
    by_path = {image.path: sources[image.source] for image in staged}
    source_record = {
        "kind": "folder",
        "bucket": event.bucket,
        "key": event.key,
        "prefix": prefix,
        "version_id": event.version_id,
    }

    def write(image: StagedImage, key: str) -> None:
        store.copy_validated(event.bucket, by_path[image.path], settings.artifacts_bucket, key)

    output = _publish(event, settings, store, plan, staged, source_record, write, seconds_left)
    return StagingResult(output, len(staged), image_bytes, len(plan.ignored))


def _check_declared_size(name: str, declared: int, limits: StagingLimits) -> None:
    if declared > limits.max_entry_bytes:
        raise DatasetValidationError(
            f"{name} is {declared} bytes; the limit per image is {limits.max_entry_bytes} (MAX_ENTRY_BYTES)",
            entry=name,
        )


def _validated(image: PlannedImage, channel: str, data: bytes, limits: StagingLimits) -> StagedImage:
    info = inspect_image(data, image.source_name, max_pixels=limits.max_image_pixels)
    return StagedImage(
        path=staged_path(channel, image.label, image.filename),
        source=image.source_name,
        label=image.label,
        channel=channel,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        format=info.format,
        width=info.width,
        height=info.height,
    )


def _check_time(seconds_left: SecondsLeft, done: int, total: int) -> None:
    if seconds_left() < TIME_MARGIN_SECONDS:
        raise _out_of_time(total, done)


def _out_of_time(total: int, done: int | None = None) -> DatasetTooLargeError:
    progress = f" after {done} of {total} images" if done is not None else f" with {total} images"
    return DatasetTooLargeError(
        f"staging ran out of Lambda time{progress}; nothing was written. Upload the images as a folder "
        "closed by _READY, or split the dataset into several uploads"
    )


def _run_all(task: Callable[[Any], Any], items: Sequence[Any], concurrency: int) -> list[Any]:
    """Run `task` over `items` in a pool; the first failure cancels what has not started and is raised."""
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    futures: list[Future[Any]] = [pool.submit(task, item) for item in items]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _publish(
    event: StageDataEvent,
    settings: StagingSettings,
    store: DatasetStore,
    plan: LayoutPlan,
    staged: list[StagedImage],
    source_record: dict[str, Any],
    write: Callable[[StagedImage, str], None],
    seconds_left: SecondsLeft,
) -> StagedDataset:
    """Write every image, then the manifest last; on any failure delete everything this run wrote."""
    bucket = settings.artifacts_bucket
    prefix = f"staged/{event.dataset_name}/{event.execution_name}/"
    carved = tuple(split for split in ("valid", "test") if split not in plan.present_splits)
    context = ManifestContext(
        event.dataset_name,
        event.execution_name,
        source_record,
        settings.limits,
        settings.split,
        plan.top_level,
        carved,
        plan.ignored,
        plan.layout,
    )
    manifest = build_manifest(context, plan.labels, staged)
    keys = [prefix + image.path for image in staged]
    manifest_key = prefix + "manifest.json"

    def write_one(image: StagedImage) -> None:
        if seconds_left() < TIME_MARGIN_SECONDS / 2:
            raise _out_of_time(len(staged))
        write(image, prefix + image.path)

    try:
        _run_all(write_one, staged, settings.concurrency)
        store.put_json(bucket, manifest_key, manifest)
    except BaseException:
        store.delete_staged(bucket, [*keys, manifest_key])
        raise
    return StagedDataset.model_validate(
        {
            "dataset_name": event.dataset_name,
            "dataset_hash": manifest["dataset_hash"],
            "labels": list(plan.labels),
            "num_classes": len(plan.labels),
            "counts": manifest["counts"],
            "channels": {split: f"s3://{bucket}/{prefix}{split}/" for split in ("train", "valid", "test")},
            "manifest": f"s3://{bucket}/{manifest_key}",
            "split_created": bool(carved),
        }
    )
