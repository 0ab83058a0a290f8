"""System-use sampling and the per-phase time split of training steps, saved as profile.json."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import torch

PHASES = ("data", "forward", "backward", "optimizer", "eval")

# Below this share of step time a phase is not called a bottleneck: every step spends time somewhere.
BOTTLENECK_SHARE = 0.4

_ADVICE = {
    "data": "raise --workers, cache decoded images, or lower the image size",
    "forward": "use a smaller model or image size, or mixed precision where the hardware has it",
    "backward": "train fewer layers (freeze the backbone) or use mixed precision where the hardware has it",
    "optimizer": "use a fused or foreach optimizer, or fewer trainable parameters",
    "eval": "evaluate less often or on a smaller validation split",
}


class SystemSampler:
    """Samples CPU, memory and (when CUDA is present) GPU use in a background thread."""

    def __init__(self, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process(os.getpid())
        self._started_at: float | None = None

    def start(self) -> SystemSampler:
        if self._thread is not None:
            return self
        self._started_at = time.time()
        # The first cpu_percent call only primes psutil's counters; it always answers 0.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> SystemSampler:
        if self._thread is None:
            return self
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval_s))
        self._thread = None
        self.samples.append(self.sample())
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self.sample())

    def sample(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        entry: dict[str, Any] = {
            "time": time.time(),
            "elapsed_s": time.time() - (self._started_at or time.time()),
            "cpu_percent": psutil.cpu_percent(None),
            "process_cpu_percent": self._process.cpu_percent(None),
            "process_rss_mb": self._process.memory_info().rss / 2**20,
            "system_memory_used_mb": (memory.total - memory.available) / 2**20,
            "system_memory_percent": memory.percent,
        }
        if torch.cuda.is_available():
            entry["gpus"] = [_gpu_sample(index) for index in range(torch.cuda.device_count())]
        return entry


def _gpu_sample(index: int) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "index": index,
        "memory_allocated_mb": torch.cuda.memory_allocated(index) / 2**20,
        "memory_reserved_mb": torch.cuda.memory_reserved(index) / 2**20,
    }
    try:
        # Needs NVML (the nvidia-ml-py package); memory figures above come from torch regardless.
        sample["utilization_percent"] = torch.cuda.utilization(index)
        free, total = torch.cuda.mem_get_info(index)
        sample["memory_used_mb"] = (total - free) / 2**20
        sample["memory_total_mb"] = total / 2**20
    except Exception as e:
        sample["utilization_error"] = f"{type(e).__name__}: {e}"
    return sample


class PhaseTimer:
    """Wall time per training phase; `steps` counts the steps that ran each phase."""

    def __init__(self, cuda_sync: bool = False) -> None:
        # Synchronizing makes GPU phases honest (kernels are async) but slows training, so it is opt-in.
        self.cuda_sync = cuda_sync and torch.cuda.is_available()
        self.seconds: dict[str, float] = {}
        self.steps: dict[str, int] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; allowed: {', '.join(PHASES)}")
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda_sync:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.steps[name] = self.steps.get(name, 0) + 1

    def split(self) -> dict[str, dict[str, float]]:
        total = sum(self.seconds.values())
        return {
            name: {
                "seconds": seconds,
                "share": seconds / total if total > 0 else 0.0,
                "steps": self.steps.get(name, 0),
                "seconds_per_step": seconds / self.steps[name] if self.steps.get(name) else 0.0,
            }
            for name, seconds in self.seconds.items()
        }


def bottleneck(seconds_by_phase: dict[str, float], threshold: float = BOTTLENECK_SHARE) -> dict[str, Any]:
    """The phase that dominates step time, in plain words, or a balanced verdict.

    The share is of the training step (data, forward, backward, optimizer); eval is reported apart, as a
    share of all timed time, since it does not slow a step.
    """
    step_phases = {k: v for k, v in seconds_by_phase.items() if k != "eval" and v > 0}
    step_total = sum(step_phases.values())
    if step_total <= 0:
        return {"phase": None, "share": 0.0, "advice": "", "summary": "no training steps were timed"}
    phase, seconds = max(step_phases.items(), key=lambda item: item[1])
    share = seconds / step_total
    result: dict[str, Any] = {"phase": phase, "share": share, "advice": _ADVICE.get(phase, "")}
    label = (
        "data loading"
        if phase == "data"
        else f"the {phase} pass"
        if phase in ("forward", "backward")
        else phase
    )
    if share >= threshold:
        result["summary"] = f"{label} takes {share:.0%} of step time: {result['advice']}"
    else:
        result["phase"] = None
        result["advice"] = ""
        result["summary"] = (
            f"no single bottleneck: the largest phase, {label}, takes {share:.0%} of step time"
        )
    eval_seconds = seconds_by_phase.get("eval", 0.0)
    if eval_seconds > step_total:
        result["summary"] += (
            f"; evaluation takes longer than training ({eval_seconds:.0f}s vs {step_total:.0f}s)"
        )
    return result


def write_profile(
    path: str, sampler: SystemSampler | None, timer: PhaseTimer | None, extra: dict | None = None
) -> dict[str, Any]:
    """Write profile.json (samples over time, the phase split, the bottleneck) and return what was written."""
    split = timer.split() if timer is not None else {}
    profile: dict[str, Any] = {
        "interval_s": sampler.interval_s if sampler is not None else None,
        "samples": sampler.samples if sampler is not None else [],
        "phases": split,
        "bottleneck": bottleneck({name: entry["seconds"] for name, entry in split.items()}),
        "cuda": torch.cuda.is_available(),
        "cuda_synchronized": bool(timer and timer.cuda_sync),
        **(extra or {}),
    }
    out = Path(path)
    if out.suffix != ".json":
        out = out / "profile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(profile, indent=1, default=str))
    return profile
