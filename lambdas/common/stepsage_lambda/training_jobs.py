"""Pieces shared by the tuning trials' definition and the final training job's request."""

from __future__ import annotations

from typing import Any

from stepsage_lambda.payloads import Channels
from stepsage_lambda.settings import TrainingSettings

CHANNELS = ("train", "valid", "test")


def input_channels(channels: Channels) -> list[dict[str, Any]]:
    """One File-mode S3Prefix channel per split; the script sees them as SM_CHANNEL_TRAIN/VALID/TEST."""
    return [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": getattr(channels, name),
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
        }
        for name in CHANNELS
    ]


def stopping_condition(settings: TrainingSettings) -> dict[str, int]:
    condition = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    if settings.use_spot:
        condition["MaxWaitTimeInSeconds"] = settings.max_wait_seconds
    return condition
