"""S3 in stage_data's verbs: ranged reads of the upload, listing a folder upload, writing the staged set."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from dataset_errors import StagingSourceError

STAGED_PREFIX = "staged/"
DELETE_BATCH = 1000
MISSING_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NoSuchBucket"}
CHANGED_CODES = {"412", "PreconditionFailed"}


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    etag: str
    version_id: str | None = None


class DatasetStore:
    """One wrapper over S3 for this Lambda; reads pin the ETag so a concurrent overwrite is detected."""

    def __init__(self, s3: Any | None = None) -> None:
        if s3 is None:
            from stepsage_lambda.clients import client

            s3 = client("s3")
        self._s3 = s3

    def describe_source(self, bucket: str, key: str, version_id: str | None) -> SourceObject:
        with _source_errors(bucket, key):
            head = self._s3.head_object(Bucket=bucket, Key=key, **_version(version_id))
        return SourceObject(key, head["ContentLength"], head["ETag"], head.get("VersionId", version_id))

    def read_range(self, bucket: str, source: SourceObject, start: int, end: int) -> bytes:
        """Bytes [start, end) of the source object, from the same version and content that was described."""
        with _source_errors(bucket, source.key):
            response = self._s3.get_object(
                Bucket=bucket,
                Key=source.key,
                Range=f"bytes={start}-{end - 1}",
                IfMatch=source.etag,
                **_version(source.version_id),
            )
            return bytes(response["Body"].read())

    def read_capped(self, bucket: str, source: SourceObject, max_bytes: int) -> bytes:
        """A whole (small) object, never holding more than `max_bytes` + one chunk whatever S3 returns."""
        with _source_errors(bucket, source.key):
            response = self._s3.get_object(Bucket=bucket, Key=source.key, IfMatch=source.etag)
        body = response["Body"]
        data = bytearray()
        try:
            for chunk in body.iter_chunks(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    break
        finally:
            body.close()
        return bytes(data)

    def list_folder(self, bucket: str, prefix: str, *, max_objects: int) -> Iterator[SourceObject]:
        """Objects under `prefix`; stops after `max_objects` + 1 so a huge folder is never listed in full."""
        paginator = self._s3.get_paginator("list_objects_v2")
        listed = 0
        with _source_errors(bucket, prefix):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield SourceObject(item["Key"], item["Size"], item["ETag"])
                    listed += 1
                    if listed > max_objects:
                        return

    def put_file(self, bucket: str, key: str, path: Path, sha256_hex: str) -> None:
        # S3 checks the body against our digest, so a staged file is byte for byte what was validated.
        checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        with path.open("rb") as body:
            self._s3.put_object(Bucket=_staged(bucket, key)[0], Key=key, Body=body, ChecksumSHA256=checksum)

    def copy_validated(self, source_bucket: str, source: SourceObject, bucket: str, key: str) -> None:
        with _source_errors(source_bucket, source.key):
            self._s3.copy_object(
                Bucket=_staged(bucket, key)[0],
                Key=key,
                CopySource={"Bucket": source_bucket, "Key": source.key},
                CopySourceIfMatch=source.etag,
            )

    def put_json(self, bucket: str, key: str, document: Any) -> None:
        body = json.dumps(document, indent=1, sort_keys=True).encode()
        self._s3.put_object(
            Bucket=_staged(bucket, key)[0], Key=key, Body=body, ContentType="application/json"
        )

    def delete_staged(self, bucket: str, keys: list[str]) -> None:
        """Remove what this run wrote; only keys under staged/ are accepted, so a source is never touched."""
        for key in keys:
            _staged(bucket, key)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            self._s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def _staged(bucket: str, key: str) -> tuple[str, str]:
    if not key.startswith(STAGED_PREFIX):
        raise ValueError(f"stage_data writes only under {STAGED_PREFIX}, not {key!r}")
    return bucket, key


@contextmanager
def _source_errors(bucket: str, key: str) -> Iterator[None]:
    """Turn S3's missing and precondition errors on the upload into one typed error; others pass through."""
    try:
        yield
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:
            raise StagingSourceError(f"s3://{bucket}/{key} no longer exists ({code})") from e
        if code in CHANGED_CODES:
            raise StagingSourceError(
                f"s3://{bucket}/{key} changed while it was being staged; the new upload starts its own run"
            ) from e
        raise
