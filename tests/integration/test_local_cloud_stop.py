"""Stopping the local cloud never hangs and never leaves a child process behind."""

from __future__ import annotations

import threading
import time

import pytest

from stepsage.local import children
from stepsage.local.cloud import CloudSettings, LocalCloud

pytestmark = pytest.mark.integration


class _StuckPart:
    def __init__(self) -> None:
        self.release = threading.Event()

    def shutdown(self) -> None:
        self.release.wait(30)


def test_a_stuck_part_is_cut_off_at_the_deadline_and_children_are_killed(tmp_path):
    cloud = LocalCloud(CloudSettings(port=0, stack_name="stop-test", work_dir=tmp_path))
    stuck = _StuckPart()
    cloud.lambdas = stuck  # type: ignore[assignment]
    sleeper = children.spawn(["sleep", "60"])
    started = time.monotonic()
    try:
        cloud.stop(deadline_s=1.0)
        assert time.monotonic() - started < 5
        assert sleeper.wait(timeout=5) == -9
    finally:
        stuck.release.set()
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_child_started_from_a_short_lived_thread_outlives_that_thread():
    started: list = []
    thread = threading.Thread(target=lambda: started.append(children.spawn(["sleep", "30"])))
    thread.start()
    thread.join()
    time.sleep(0.5)
    try:
        assert started[0].poll() is None
    finally:
        started[0].kill()
        started[0].wait()
