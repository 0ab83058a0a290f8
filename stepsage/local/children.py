"""Starting the local cloud's child processes so that none outlives the cloud, even when it is killed."""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import threading
from concurrent.futures import Future
from typing import Any

_PR_SET_PDEATHSIG = 1
# Linux sends the parent-death signal when the *thread* that forked the child exits, not the process. So
# every child is forked from this one thread, which lives as long as the process; a short-lived request
# thread spawning a Lambda worker would otherwise get it killed the moment the request ends. It is a daemon:
# it only ever waits for the next command, so it must not hold the interpreter's exit.
_REQUESTS: queue.Queue[tuple[Any, Future[Any]]] = queue.Queue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _serve_spawns() -> None:
    while True:
        start, result = _REQUESTS.get()
        if result.set_running_or_notify_cancel():
            try:
                result.set_result(start())
            except BaseException as error:
                result.set_exception(error)


def _submit(start: Any) -> Future[Any]:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_serve_spawns, name="child-spawner", daemon=True)
            _spawner.start()
    result: Future[Any] = Future()
    _REQUESTS.put((start, result))
    return result


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

    return _submit(start).result()


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
