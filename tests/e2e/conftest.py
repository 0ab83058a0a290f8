"""Session fixtures for whole-pipeline runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_data import build_broken_zip, build_formats_dataset, build_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny_dataset(tmp_path_factory.mktemp("tiny-dataset"))


@pytest.fixture(scope="session")
def broken_dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_broken_zip(tmp_path_factory.mktemp("broken-dataset"))


@pytest.fixture(scope="session")
def formats_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_formats_dataset(tmp_path_factory.mktemp("formats-dataset"))
