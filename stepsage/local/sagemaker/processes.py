"""Child processes of the emulator: each in its own process group, all killed on shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from stepsage.local import children


def thread_share(cores: int, parallel: int) -> int:
    """Threads for one of `parallel` processes sharing `cores`: never zero, never oversubscribed."""
    return max(1, cores // max(1, parallel))


def thread_environment(threads: int) -> dict[str, str]:
    """Environment that caps torch/OpenMP/BLAS threads, so concurrent children do not starve each other."""
    value = str(threads)
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "TORCH_NUM_THREADS": value,
    }


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code: {returncode}"


class ChildProcesses:
    """Starts children in new sessions and remembers them, so that `kill_all` leaves no orphans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def spawn(self, command: Sequence[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the emulator is shutting down")
            # Its own process group, so a kill reaches its grandchildren too; and it dies with the cloud.
            process = children.spawn(
                list(command),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            self._children.add(process)
        return process

    def forget(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.discard(process)

    def terminate(self, process: subprocess.Popen[bytes], grace_seconds: float) -> int:
        """SIGTERM the process group, SIGKILL it after `grace_seconds`; returns the exit code."""
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        # The leader may be gone while members of its group linger.
        _signal_group(process, signal.SIGKILL)
        self.forget(process)
        return process.returncode

    def kill_all(self, grace_seconds: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            children = list(self._children)
        for process in children:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for process in children:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)
            process.wait()
            self.forget(process)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
