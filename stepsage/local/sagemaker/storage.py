"""S3 transfers the emulator makes on a job's behalf (channels, code, checkpoints, artifacts, model data)."""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Transfers run on the job's own (daemon) thread: a managed transfer's worker pool is made of non-daemon
# threads, which the interpreter joins at exit even when the S3 they wait for has gone.
_IN_THREAD = TransferConfig(use_threads=False)


class S3TransferError(Exception):
    """An S3 read or write failed; the message names the URI."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise S3TransferError(f"Not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise S3TransferError(f"No bucket in S3 URI: {uri}")
    return bucket, key


class Storage(Protocol):
    """What a job reads its channels and code from and writes its artifacts to: S3, or local folders."""

    def close(self) -> None: ...
    def exists(self, uri: str) -> bool: ...
    def download_prefix(self, uri: str, destination: Path) -> int: ...
    def download_file(self, uri: str, destination: Path) -> None: ...
    def upload_file(self, source: Path, uri: str) -> None: ...
    def sync_up(self, source: Path, uri: str, uploaded: dict[str, float]) -> int: ...


def sync_up(storage: Storage, source: Path, uri: str, uploaded: dict[str, float]) -> int:
    """Upload files under `source` that are new or changed since the last sync (tracked in `uploaded`)."""
    count = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        # A job writes checkpoints atomically (temp file, then rename), so a listed file may be gone by
        # the time it is read; the next sync catches what replaced it.
        try:
            mtime = path.stat().st_mtime
            if uploaded.get(relative) == mtime:
                continue
            storage.upload_file(path, f"{uri.rstrip('/')}/{relative}")
        except FileNotFoundError:
            continue
        uploaded[relative] = mtime
        count += 1
    return count


class S3Storage:
    """Reads and writes the (local) S3 that the emulator is pointed at."""

    def __init__(self, endpoint_url: str | None, region: str) -> None:
        session = boto3.session.Session()
        credentials: dict[str, Any] = {}
        if endpoint_url and session.get_credentials() is None:
            # A local S3 accepts any credentials, and boto3 refuses to sign without some.
            credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self._client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            **credentials,
        )
        self._closed = threading.Event()

    def close(self) -> None:
        """Abort transfers in progress and refuse new ones: the emulator is shutting down."""
        self._closed.set()

    def _check_open(self, uri: str) -> None:
        if self._closed.is_set():
            raise S3TransferError(f"Transfer of {uri} aborted: the emulator is shutting down")

    def exists(self, uri: str) -> bool:
        bucket, key = parse_s3_uri(uri)
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        return True

    def download_prefix(self, uri: str, destination: Path) -> int:
        """Copy every object under `uri` into `destination`, keeping the layout below the prefix."""
        bucket, prefix = parse_s3_uri(uri)
        self._check_open(uri)
        destination.mkdir(parents=True, exist_ok=True)
        transfers: list[tuple[str, Path]] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue
                    relative = key[len(prefix) :].lstrip("/") if prefix and key != prefix else Path(key).name
                    target = (destination / relative).resolve()
                    if not target.is_relative_to(destination.resolve()):
                        raise S3TransferError(f"Object key escapes the destination: s3://{bucket}/{key}")
                    transfers.append((key, target))

            def fetch(transfer: tuple[str, Path]) -> None:
                key, target = transfer
                self._check_open(f"s3://{bucket}/{key}")
                target.parent.mkdir(parents=True, exist_ok=True)
                # A plain GET per object: image datasets are many small files, where a managed transfer's
                # HEAD and thread start cost more than the bytes.
                target.write_bytes(self._client.get_object(Bucket=bucket, Key=key)["Body"].read())

            pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-download")
            try:
                for _ in pool.map(fetch, transfers):
                    pass
            finally:
                # On the first failure (a close() among them), what has not started never will.
                pool.shutdown(wait=True, cancel_futures=True)
        except (ClientError, BotoCoreError) as e:
            raise S3TransferError(f"Data download failed from {uri}: {e}") from e
        return len(transfers)

    def download_file(self, uri: str, destination: Path) -> None:
        bucket, key = parse_s3_uri(uri)
        self._check_open(uri)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client.download_file(bucket, key, str(destination), Config=_IN_THREAD)
        except (ClientError, BotoCoreError) as e:
            raise S3TransferError(f"Could not download {uri}: {e}") from e

    def upload_file(self, source: Path, uri: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self._check_open(uri)
        try:
            self._client.upload_file(str(source), bucket, key, Config=_IN_THREAD)
        except (ClientError, BotoCoreError) as e:
            raise S3TransferError(f"Could not upload to {uri}: {e}") from e

    def sync_up(self, source: Path, uri: str, uploaded: dict[str, float]) -> int:
        return sync_up(self, source, uri, uploaded)


class FolderStorage:
    """S3 as folders on this machine (`s3://<bucket>/<key>` is `buckets[bucket]/<key>`), so one job runs with
    no S3 at all: `stepsage train-local` runs the emulator's training job over the dataset's own folder."""

    def __init__(self, buckets: dict[str, Path]) -> None:
        self.buckets = {name: Path(folder) for name, folder in buckets.items()}

    def path(self, uri: str) -> Path:
        """The file that `uri` names."""
        bucket, key = parse_s3_uri(uri)
        if bucket not in self.buckets:
            raise S3TransferError(f"NoSuchBucket: {bucket} (in {uri}) is not one of {sorted(self.buckets)}")
        root = self.buckets[bucket].resolve()
        path = (root / key).resolve()
        if not path.is_relative_to(root):
            raise S3TransferError(f"Object key escapes its bucket: {uri}")
        return path

    def close(self) -> None:
        pass

    def exists(self, uri: str) -> bool:
        return self.path(uri).is_file()

    def download_prefix(self, uri: str, destination: Path) -> int:
        """S3 prefix semantics (`train` matches `train/` and `train.txt`), keeping the layout below it."""
        bucket, prefix = parse_s3_uri(uri)
        root = self.path(f"s3://{bucket}/")
        destination.mkdir(parents=True, exist_ok=True)
        count = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = path.relative_to(root).as_posix()
            if not key.startswith(prefix):
                continue
            relative = key[len(prefix) :].lstrip("/") if prefix and key != prefix else path.name
            _link_or_copy(path, destination / relative)
            count += 1
        return count

    def download_file(self, uri: str, destination: Path) -> None:
        source = self.path(uri)
        if not source.is_file():
            raise S3TransferError(f"Could not download {uri}: no such file {source}")
        _link_or_copy(source, destination)

    def upload_file(self, source: Path, uri: str) -> None:
        target = self.path(uri)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)  # a copy, as an upload is: the job may rewrite its file
        except OSError as e:
            raise S3TransferError(f"Could not upload to {uri}: {e}") from e

    def sync_up(self, source: Path, uri: str, uploaded: dict[str, float]) -> int:
        return sync_up(self, source, uri, uploaded)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows it: a dataset of gigabytes is not copied for one job."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def directory_has_files(path: Path) -> bool:
    return path.is_dir() and any(os.scandir(path))
