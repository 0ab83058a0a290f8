"""The held-out test split on S3, scored against an endpoint image by image (Deploy and SmokeTest)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from contracts.images import has_image_extension
from stepsage_lambda.runtime_api import RuntimeApi, content_type_for
from stepsage_lambda.s3_api import S3Api, split_uri


@dataclass(frozen=True)
class Score:
    correct: int
    total: int
    failed_calls: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def sample_evenly(items: Sequence[str], limit: int) -> list[str]:
    """At most `limit` items spread over the whole (class-sorted) list, so every class tends to appear."""
    if limit <= 0:
        return []
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def labelled_images(test_prefix_uri: str, s3: S3Api) -> list[tuple[str, str]]:
    """(key, label) for every image under `<test prefix>/<label>/`, sorted by key, so by class."""
    bucket, prefix = split_uri(test_prefix_uri.rstrip("/") + "/")
    images = []
    for key in s3.list_keys(f"s3://{bucket}/{prefix}"):
        parts = key[len(prefix) :].split("/")
        # Every format staging accepts: a test image the scorer skipped would score a model on nothing.
        if len(parts) == 2 and has_image_extension(parts[1]):
            images.append((key, parts[0]))
    return sorted(images)


def score_endpoint(
    endpoint_name: str,
    test_prefix_uri: str,
    limit: int,
    *,
    s3: S3Api,
    runtime: RuntimeApi,
    threads: int = 8,
) -> Score:
    """Top-1 accuracy of the endpoint on at most `limit` test images spread over the split."""
    bucket, _ = split_uri(test_prefix_uri)
    images = labelled_images(test_prefix_uri, s3)
    chosen = dict(images)
    sample = sample_evenly([key for key, _ in images], limit)

    def right(key: str) -> bool | None:
        try:
            body = s3.read_bytes(f"s3://{bucket}/{key}")
            return runtime.top_label(endpoint_name, body, content_type_for(key)) == chosen[key]
        except (ClientError, BotoCoreError, KeyError, IndexError, ValueError):
            # A call that fails or answers out of contract is a wrong answer, counted apart as well.
            return None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        answers = list(pool.map(right, sample))
    return Score(
        correct=sum(1 for a in answers if a),
        total=len(answers),
        failed_calls=sum(1 for a in answers if a is None),
    )
