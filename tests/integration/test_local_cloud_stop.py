"""Stopping the local cloud never hangs and never leaves a child process behind."""

from __future__ import annotations

import threading
import time

import pytest
from conftest_sagemaker import FAKE_TRAIN, tarball, training_request

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


def _non_daemon_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.is_alive() and not t.daemon and t is not threading.main_thread()
    ]


def test_after_stop_only_the_main_thread_can_hold_the_exit(tmp_path):
    """A job stopped mid-download, children spawned: stop() ends it all, so the exit has nothing to join."""
    cloud = LocalCloud(CloudSettings(port=0, stack_name="stop-threads", work_dir=tmp_path)).start()
    sleeper = None
    try:
        s3 = cloud.client("s3")
        bucket = cloud.artifacts_bucket
        for index in range(300):
            s3.put_object(Bucket=bucket, Key=f"stop/data/train/{index:04d}.txt", Body=b"x" * 1024)
        s3.put_object(Bucket=bucket, Key="stop/code/sourcedir.tar.gz", Body=tarball({"train.py": FAKE_TRAIN}))
        uris = {
            "train": f"s3://{bucket}/stop/data/train",
            "code": f"s3://{bucket}/stop/code/sourcedir.tar.gz",
            "output": f"s3://{bucket}/stop/output",
        }
        cloud.sagemaker.handle("CreateTrainingJob", training_request("stop-mid-download", uris))
        job = cloud.sagemaker.training_jobs["stop-mid-download"]
        deadline = time.monotonic() + 30
        while job.secondary_status == "Starting" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert job.secondary_status == "Downloading"
        sleeper = children.spawn(["sleep", "60"])  # the spawner thread is running
        started = time.monotonic()
    finally:
        cloud.stop()
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
    assert time.monotonic() - started < 20
    assert job.status == "Stopped", job.failure_reason
    assert _non_daemon_threads() == []
