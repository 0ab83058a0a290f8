"""S3 in the pipeline's own verbs: objects by URI, JSON documents and files inside job tarballs."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from stepsage_lambda.clients import client as default_client

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _member_matches(member_name: str, wanted: str) -> bool:
    return member_name.removeprefix("./") == wanted.removeprefix("./")


class S3Api:
    def __init__(self, s3_client: Any | None = None) -> None:
        self._s3 = s3_client or default_client("s3")

    def put_unless_identical(self, bucket: str, key: str, body: bytes, content_type: str) -> bool:
        """Write `body` unless the key already holds exactly these bytes; True when written.

        The existing object is read back and hashed, not trusted for its name: a key that exists with other
        bytes (a truncated upload, or a writer that should not have had access) is overwritten.
        """
        if self.sha256_of(bucket, key) == hashlib.sha256(body).hexdigest():
            return False
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        return True

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=bucket, Key=key)
        except self._s3.exceptions.ClientError as e:
            # HEAD has no body, so S3 can only answer with the status code; the code is the error's type here.
            if e.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise
        return True

    def sha256_of(self, bucket: str, key: str) -> str | None:
        """Hex SHA-256 of the object's bytes, None when there is no such key."""
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except self._s3.exceptions.NoSuchKey:
            return None
        digest = hashlib.sha256()
        for chunk in response["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()

    def read_bytes(self, object_uri: str) -> bytes:
        bucket, key = split_uri(object_uri)
        return bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def read_json(self, object_uri: str) -> Any:
        return json.loads(self.read_bytes(object_uri))

    def read_tar_members(self, tarball_uri: str, members: tuple[str, ...]) -> dict[str, bytes]:
        """Files from a .tar.gz on S3, in one streamed pass that stops once all are found.

        Members not in the archive are left out of the result.
        """
        bucket, key = split_uri(tarball_uri)
        body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        found: dict[str, bytes] = {}
        try:
            with tarfile.open(fileobj=body, mode="r|gz") as archive:
                for entry in archive:
                    wanted = next((m for m in members if _member_matches(entry.name, m)), None)
                    if wanted is None or not entry.isfile():
                        continue
                    extracted = archive.extractfile(entry)
                    if extracted is not None:
                        found[wanted] = extracted.read()
                    if len(found) == len(members):
                        break
        finally:
            body.close()
        return found

    def read_tar_member(self, tarball_uri: str, member: str) -> bytes | None:
        return self.read_tar_members(tarball_uri, (member,)).get(member)

    def list_keys(self, prefix_uri: str, limit: int | None = None) -> Iterator[str]:
        """Keys under an s3:// prefix, in S3's (lexicographic) order."""
        bucket, prefix = split_uri(prefix_uri)
        seen = 0
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]
                seen += 1
                if limit is not None and seen >= limit:
                    return
