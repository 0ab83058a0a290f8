"""Progress lines for long uploads and downloads: plain text, one line per step, safe to log in CI."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


class TransferProgress:
    """A byte counter for uploads and downloads that prints a plain line at every `step` percent."""

    def __init__(self, label: str, total_bytes: int, stream: TextIO | None = None, step: int = 10) -> None:
        self.label = label
        self.total = max(1, total_bytes)
        self.stream = stream or sys.stderr
        self.step = step
        self.done = 0
        self._next = step
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def __call__(self, transferred: int) -> None:
        """boto3's transfer Callback: called with the bytes moved since the last call, from many threads."""
        with self._lock:
            self.done += transferred
            percent = 100 * self.done // self.total
            if percent < self._next:
                return
            self._next = (percent // self.step + 1) * self.step
            rate = self.done / max(1e-6, time.monotonic() - self._started) / 1e6
            self.stream.write(f"{self.label}: {percent}% of {self.total / 1e6:.1f} MB ({rate:.1f} MB/s)\n")
            self.stream.flush()


class CountingReader:
    """A file-like wrapper that reports the bytes read through it, e.g. an S3 body being streamed."""

    def __init__(self, raw: Any, progress: TransferProgress) -> None:
        self.raw = raw
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        if chunk:
            self.progress(len(chunk))
        return chunk
