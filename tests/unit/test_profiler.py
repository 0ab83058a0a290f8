"""System sampling, the phase split and the bottleneck sentence in profile.json."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import profiler

pytestmark = pytest.mark.unit


def test_bottleneck_names_data_loading_with_advice():
    verdict = profiler.bottleneck(
        {"data": 6.2, "forward": 2.0, "backward": 1.5, "optimizer": 0.3, "eval": 1.0}
    )
    assert verdict["phase"] == "data"
    assert verdict["share"] == pytest.approx(0.62)
    assert verdict["summary"].startswith("data loading takes 62% of step time: raise --workers")


def test_bottleneck_balanced_and_empty_and_slow_eval():
    balanced = profiler.bottleneck({"data": 1.0, "forward": 1.2, "backward": 1.1, "optimizer": 0.9})
    assert balanced["phase"] is None
    assert balanced["summary"].startswith(
        "no single bottleneck: the largest phase, the forward pass, takes 29%"
    )
    assert profiler.bottleneck({})["summary"] == "no training steps were timed"
    slow_eval = profiler.bottleneck({"forward": 1.0, "backward": 3.0, "eval": 10.0})
    assert slow_eval["phase"] == "backward"
    assert "evaluation takes longer than training" in slow_eval["summary"]


def test_phase_timer_accumulates_seconds_and_steps():
    timer = profiler.PhaseTimer()
    for _ in range(3):
        with timer.phase("data"):
            time.sleep(0.02)
        with timer.phase("forward"):
            pass
    split = timer.split()
    assert split["data"]["steps"] == 3 and split["forward"]["steps"] == 3
    assert split["data"]["seconds"] >= 0.06
    assert split["data"]["share"] + split["forward"]["share"] == pytest.approx(1.0)
    assert split["data"]["share"] > 0.9
    with pytest.raises(ValueError, match="allowed: data, forward"), timer.phase("loading"):
        pass


def test_phase_timer_counts_a_phase_that_raised():
    timer = profiler.PhaseTimer()
    with pytest.raises(RuntimeError), timer.phase("backward"):
        raise RuntimeError("boom")
    assert timer.steps["backward"] == 1


def test_sampler_records_timestamped_samples_in_the_background(tmp_path):
    sampler = profiler.SystemSampler(interval_s=0.05).start()
    time.sleep(0.3)
    sampler.stop()
    assert len(sampler.samples) >= 3
    times = [s["time"] for s in sampler.samples]
    assert times == sorted(times)
    first = sampler.samples[0]
    assert first["process_rss_mb"] > 1 and 0 <= first["system_memory_percent"] <= 100
    assert "cpu_percent" in first and "process_cpu_percent" in first
    count = len(sampler.samples)
    time.sleep(0.15)
    assert len(sampler.samples) == count  # stopped means stopped

    timer = profiler.PhaseTimer()
    with timer.phase("data"):
        time.sleep(0.03)
    with timer.phase("forward"):
        time.sleep(0.01)
    written = profiler.write_profile(str(tmp_path / "profiler"), sampler, timer, {"device": "cpu"})
    on_disk = json.loads((tmp_path / "profiler" / "profile.json").read_text())
    assert on_disk == json.loads(json.dumps(written))
    assert on_disk["device"] == "cpu"
    assert on_disk["bottleneck"]["phase"] == "data"
    assert on_disk["phases"]["data"]["share"] > 0.5
    assert len(on_disk["samples"]) == count


def test_sampler_rejects_a_non_positive_interval():
    with pytest.raises(ValueError):
        profiler.SystemSampler(interval_s=0)
