"""Starting the local cloud's child processes so that none outlives the cloud, even when it is killed."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1
# Linux sends the parent-death signal when the *thread* that forked the child exits, not the process. So
# every child is forked from this one thread, which lives as long as the process; a short-lived request
# thread spawning a Lambda worker would otherwise get it killed the moment the request ends.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="child-spawner")


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it when the local cloud's process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def spawn(command: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(command, **popen_kwargs)` in its own session, tied to this process's life."""
    popen_kwargs.setdefault("start_new_session", True)

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(command, preexec_fn=_die_with_parent, **popen_kwargs)

    return _SPAWNER.submit(start).result()


def kill_children() -> None:
    """SIGKILL every process descended from this one, each with its process group (the last resort)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
