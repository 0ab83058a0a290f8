"""From an uploaded object to one uniquely named pipeline execution, or to a notice saying why not."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import datasets, junk
from stepsage_lambda.naming import dataset_name_from_key, execution_name
from stepsage_lambda.notices_api import NoticesApi
from stepsage_lambda.settings import declared, text
from stepsage_lambda.stepfunctions_api import StepFunctionsApi

# Archive formats people upload instead of a zip, longest first so ".tar.gz" wins over ".gz".
OTHER_ARCHIVE_SUFFIXES = (
    ".tar.zst", ".tar.bz2", ".tar.gz", ".tar.xz", ".tbz2", ".tgz", ".txz", ".tar", ".zipx", ".7z", ".rar",
    ".gz", ".bz2", ".xz", ".zst", ".lz", ".lzma", ".cab", ".arj", ".iso", ".dmg", ".z",
)  # fmt: skip
NOTICE_SUBJECT = "stepsage: an upload under datasets/ started no run"  # SNS: ASCII, under 100 characters
HOW_TO_UPLOAD = (
    f"A run starts for {datasets.PREFIX}<name>.zip (.zip in any case) or for a folder upload "
    f"{datasets.PREFIX}<name>/... closed by the empty marker "
    f"{datasets.PREFIX}<name>/{datasets.READY_MARKER}; <name> is {datasets.NAME_RULE}."
)


@dataclass(frozen=True)
class TriggerSettings:
    """StartPipelineFunction's environment, read once per cold start by its handler."""

    state_machine_arn: str
    notification_topic_arn: str

    ENV_VARS: ClassVar[tuple[str, ...]] = ("STATE_MACHINE_ARN", "NOTIFICATION_TOPIC_ARN")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TriggerSettings:
        env = declared(env, cls)
        return cls(
            state_machine_arn=text(env, "STATE_MACHINE_ARN"),
            notification_topic_arn=text(env, "NOTIFICATION_TOPIC_ARN"),
        )


@dataclass(frozen=True)
class PipelineStart:
    execution_name: str
    payload: dict[str, Any]


def plan_start(bucket: str, key: str, version_id: str | None) -> PipelineStart | None:
    """The execution an upload starts: `datasets/<name>.zip` (any case of .zip) or the
    `datasets/<name>/_READY` marker that closes a folder upload, with a valid name; None otherwise."""
    dataset = dataset_name_from_key(key)
    if dataset is None or not datasets.is_valid_name(dataset):
        return None
    name = execution_name(bucket, key, version_id, dataset)
    payload = {"bucket": bucket, "key": key, "version_id": version_id, "dataset_name": dataset}
    return PipelineStart(execution_name=name, payload=payload)


def refusal(key: str) -> str | None:
    """Why an upload that looks meant to start a run cannot, and what to do; None for objects that are not
    meant to (anything outside datasets/, console folder placeholders, desktop clutter such as .DS_Store,
    and the images of a folder upload, which its _READY marker starts)."""
    if not key.startswith(datasets.PREFIX):
        head, slash, rest = key.partition("/")
        fixed = datasets.PREFIX + rest
        if (
            slash
            and head.casefold() + "/" == datasets.PREFIX
            and (datasets.upload_kind(fixed) or refusal(fixed))
        ):
            return (
                f"it is under {head + '/'!r}, and keys are case-sensitive: only {datasets.PREFIX!r} starts "
                f"runs. Copy it to {fixed}"
            )
        return None
    rest = key[len(datasets.PREFIX) :]
    if not rest or rest.endswith("/"):
        return None
    parts = rest.split("/")
    last = parts[-1]
    if len(parts) == 1 and last.casefold() == datasets.ARCHIVE_SUFFIX:
        return "the archive has no name before .zip. Rename it datasets/<name>.zip"
    if junk.junk_reason(parts):
        return None
    dataset = dataset_name_from_key(key)
    if dataset is not None:
        return None if datasets.is_valid_name(dataset) else _bad_name(dataset)
    folded = last.casefold()
    if len(parts) == 1:
        if folded == datasets.READY_MARKER.casefold():
            return (
                f"a {datasets.READY_MARKER} marker closes one dataset folder, so it goes inside it: "
                f"{datasets.PREFIX}<name>/{datasets.READY_MARKER}"
            )
        archive = next((s for s in OTHER_ARCHIVE_SUFFIXES if folded.endswith(s)), None)
        if archive:
            return (
                f"it is a {archive} archive, and only zip archives start a run. Repack it as a zip "
                "(e.g. `zip -r <name>.zip train valid test`) or upload the images as a folder"
            )
        return "a file directly under datasets/ is neither a dataset archive nor a folder upload"
    if folded.endswith(datasets.ARCHIVE_SUFFIX):
        return (
            "a zip inside a folder starts nothing (and a folder upload may hold only images). "
            f"Upload it as {datasets.PREFIX}<name>.zip"
        )
    # Marker look-alikes, as far as the rule's filter delivers them (its wildcards are case-sensitive).
    if folded == datasets.READY_MARKER.casefold() or last.startswith(datasets.READY_MARKER + "."):
        if len(parts) > 2:
            return (
                f"the {datasets.READY_MARKER} marker must sit directly in the dataset's folder: "
                f"{datasets.PREFIX}{parts[0] or '<name>'}/{datasets.READY_MARKER}"
            )
        if not parts[0]:
            return (
                f"the {datasets.READY_MARKER} marker has no dataset folder name (an empty name, '//'): use "
                f"{datasets.PREFIX}<name>/{datasets.READY_MARKER}"
            )
        return (
            f"the marker must be named exactly {datasets.READY_MARKER} (upper case, no extension; text "
            "editors add .txt). Upload an empty object at "
            f"{datasets.PREFIX}{parts[0]}/{datasets.READY_MARKER}"
        )
    return None


def _bad_name(dataset: str) -> str:
    suggestion = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-._")[: datasets.NAME_MAX_LENGTH]
    hint = f" such as {suggestion!r}" if datasets.is_valid_name(suggestion) else ""
    return (
        f"the dataset name {dataset[:120]!r} cannot be served at POST /<name>: use {datasets.NAME_RULE}. "
        f"Upload it again under a valid name{hint}"
    )


def notice_message(bucket: str, key: str, reason: str) -> str:
    return (
        f"The upload {key[:1024]!r} in bucket {bucket} did not start a pipeline run: {reason}.\n\n"
        f"{HOW_TO_UPLOAD}\nThe object was left as it is."
    )


def start_for_upload(
    bucket: str,
    key: str,
    version_id: str | None,
    settings: TriggerSettings,
    sfn: StepFunctionsApi,
    notices: NoticesApi,
) -> dict[str, Any]:
    """Start (or recognise as already started) the execution for one upload, or publish why it cannot
    start one; the handler's whole job."""
    plan = plan_start(bucket, key, version_id)
    if plan is None:
        reason = refusal(key)
        if reason is None:
            return {"status": "ignored", "key": key}
        notices.publish(settings.notification_topic_arn, NOTICE_SUBJECT, notice_message(bucket, key, reason))
        return {"status": "refused", "key": key, "reason": reason}
    started = sfn.start_once(settings.state_machine_arn, plan.execution_name, plan.payload)
    return {
        "status": "duplicate" if started.duplicate else "started",
        "execution_name": plan.execution_name,
        "execution_arn": started.execution_arn,
        **plan.payload,
    }
