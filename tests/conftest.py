"""Shared test setup: keep torch to one thread so parallel work on two cores stays predictable."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(autouse=True)
def _cold_start_lambda_settings() -> None:
    """Handlers read their Settings once per cold start; tests set the environment per test: each is cold."""
    for name, module in list(sys.modules.items()):
        settings = getattr(module, "settings", None) if name.startswith("_lambda_") else None
        if callable(settings) and hasattr(settings, "cache_clear"):
            settings.cache_clear()
