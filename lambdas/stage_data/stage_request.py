"""The state machine's input to StageData, parsed by Powertools' parser."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts import datasets

READY_MARKER = datasets.READY_MARKER


class StageDataEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    version_id: str | None = None
    # Only the shape of one key segment here; stage_dataset checks contracts.datasets.NAME_RULE and fails
    # the run with DatasetValidationError, which notifies the user, instead of an opaque parse error.
    dataset_name: str = Field(min_length=1, max_length=1024, pattern=r"^[^/\x00-\x1f]+$")
    execution_name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")

    @model_validator(mode="after")
    def _key_names_the_dataset(self) -> StageDataEvent:
        if datasets.name_from_key(self.key) != self.dataset_name:
            allowed = (self.archive_key, self.folder_prefix + READY_MARKER)
            raise ValueError(
                f"key must be one of {allowed} (.zip in any case) for dataset {self.dataset_name!r}, "
                f"got {self.key!r}"
            )
        return self

    @property
    def archive_key(self) -> str:
        return datasets.archive_key(self.dataset_name)

    @property
    def folder_prefix(self) -> str:
        return datasets.folder_prefix(self.dataset_name)

    @property
    def kind(self) -> Literal["zip", "folder"]:
        return datasets.upload_kind(self.key) or "folder"
