"""Test helpers: the sample events in events/, and the Lambdas' flat modules loaded as their runtime does."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = ROOT / "events"
LAMBDAS_DIR = ROOT / "lambdas"
COMMON_DIR = LAMBDAS_DIR / "common"
ASL_PATH = ROOT / "state_machine" / "pipeline.asl.json"

# Powertools reads these when a handler module is imported; tests never reach X-Ray or CloudWatch.
_POWERTOOLS_ENV = {
    "POWERTOOLS_METRICS_NAMESPACE": "stepsage-tests",
    "POWERTOOLS_SERVICE_NAME": "stepsage-tests",
    "POWERTOOLS_TRACE_DISABLED": "1",
}


def load_event(name: str) -> dict[str, Any]:
    """events/<name>.json, the same file `sam local invoke -e` takes."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def load_lambda_module(function_dir: str, module: str = "app") -> ModuleType:
    """lambdas/<function_dir>/<module>.py under a unique name, with its folder and the layer importable.

    On Lambda each function's folder is the root of its package and the layer sits on the path, so the
    modules import each other flat; every handler is called `app`, hence the unique name here.
    """
    for key, value in _POWERTOOLS_ENV.items():
        os.environ.setdefault(key, value)
    for folder in (COMMON_DIR, LAMBDAS_DIR / function_dir):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    unique = f"_lambda_{function_dir}_{module}"
    if unique in sys.modules:
        return sys.modules[unique]
    return load_file_module(unique, LAMBDAS_DIR / function_dir / f"{module}.py")


def load_file_module(name: str, path: Path) -> ModuleType:
    """The Python file at `path` as module `name`, registered in sys.modules first (dataclasses look their
    module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


@dataclass
class FakeLambdaContext:
    """The LambdaContext attributes Powertools' Logger reads."""

    function_name: str = "stepsage-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:stepsage-test"
    aws_request_id: str = "8f4b5c1e-0000-4000-8000-000000000000"
    function_version: str = "$LATEST"
