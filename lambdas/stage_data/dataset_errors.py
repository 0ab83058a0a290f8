"""Typed errors of stage_data; Step Functions sees the class name as the Lambda error name."""

from __future__ import annotations


class DatasetValidationError(Exception):
    """The uploaded dataset is unsafe or malformed; the message names the bad entry or class."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry


class DatasetTooLargeError(DatasetValidationError):
    """The dataset is beyond what Lambda staging handles; the message gives the numbers and what to do."""


class StagingSourceError(Exception):
    """The source object vanished or changed while it was being staged."""
