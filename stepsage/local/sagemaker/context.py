"""What every emulated resource shares: S3, child processes, cores, paths, ARNs and the event stream."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepsage.local.sagemaker.processes import ChildProcesses
from stepsage.local.sagemaker.storage import Storage

Listener = Callable[[dict[str, Any]], None]

logger = logging.getLogger(__name__)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class EmulatorContext:
    storage: Storage
    work_dir: Path
    region: str
    account_id: str
    cores: int
    python: str
    processes: ChildProcesses = field(default_factory=ChildProcesses)
    # Seconds between SIGTERM and SIGKILL when a job is stopped (AWS gives 120 s; locally less is kinder).
    stop_grace_seconds: float = 10.0
    checkpoint_sync_seconds: float = 5.0
    _listeners: list[Listener] = field(default_factory=list)
    _listener_lock: threading.Lock = field(default_factory=threading.Lock)

    def arn(self, resource: str, name: str) -> str:
        # SageMaker lower-cases names inside ARNs.
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource}/{name.lower()}"

    def add_listener(self, listener: Listener) -> None:
        with self._listener_lock:
            self._listeners.append(listener)

    def emit(self, event: str, **fields: Any) -> None:
        payload = {"event": event, "time": now(), **fields}
        with self._listener_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(payload)
            except Exception:
                # A broken progress display must not kill a training job.
                logger.exception("SageMaker emulator listener failed on %s", event)
