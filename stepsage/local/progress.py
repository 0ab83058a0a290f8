"""Live progress of a local run: pipeline states, tuning trials and epochs, as plain lines."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    keys = ("train:loss", "valid:loss", "valid:accuracy")
    picked = [
        f"{k.replace(':', '_')}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), int | float)
    ]
    return " ".join(picked)


class ProgressPrinter:
    """Turns Step Functions history events and SageMaker emulator events into one readable line each.

    Lines are plain (no cursor tricks), so CI logs stay readable; a terminal gets the same lines.
    """

    def __init__(self, stream: TextIO | None = None, show_epochs: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.show_epochs = show_epochs
        self.started = time.monotonic()
        self.state_started: dict[str, float] = {}
        self.state_seconds: dict[str, float] = {}
        self.best: tuple[str, float] | None = None
        self._last_status: dict[str, tuple[Any, Any]] = {}
        self._trials_done: dict[str, set[str]] = {}
        self._trials_running: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        with self._lock:
            self.stream.write(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {text}\n")
            self.stream.flush()

    def __call__(self, source: str, event: dict[str, Any]) -> None:
        if source == "states":
            self._state_event(event)
        elif source == "sagemaker":
            self._sagemaker_event(event)

    def _state_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            name = (event.get("stateEnteredEventDetails") or {}).get("name", "?")
            self.state_started[name] = time.monotonic()
            self._line(f"state  {name} ...")
        elif kind.endswith("StateExited"):
            name = (event.get("stateExitedEventDetails") or {}).get("name", "?")
            seconds = time.monotonic() - self.state_started.get(name, time.monotonic())
            self.state_seconds[name] = self.state_seconds.get(name, 0.0) + seconds
            self._line(f"state  {name} done in {seconds:.1f} s")
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            details = event.get("executionFailedEventDetails") or {}
            suffix = f": {details.get('error')} {details.get('cause', '')[:300]}" if details else ""
            self._line(f"pipeline {kind.removeprefix('Execution').upper()}{suffix}")
        elif kind.endswith("Failed") and kind != "ExecutionFailed":
            failure: dict[str, Any] = next(
                (v for k, v in event.items() if k.endswith("FailedEventDetails")), {}
            )
            self._line(f"error  {kind}: {failure.get('error', '')} {str(failure.get('cause', ''))[:200]}")

    def _sagemaker_event(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        job = str(event.get("job", ""))
        if name == "TrainingJobStatus":
            status, secondary = event.get("status"), event.get("secondary_status")
            if self._last_status.get(job) == (status, secondary):
                return
            self._last_status[job] = (status, secondary)
            kind = "trial" if event.get("tuning_job_arn") else "job"
            reason = f": {event['failure_reason']}" if event.get("failure_reason") else ""
            self._line(f"{kind:<6} {job} {status} ({secondary}){reason}")
        elif name == "Epoch" and self.show_epochs:
            self._line(f"epoch  {job} #{event.get('epoch')} {_fmt_metrics(event.get('metrics') or {})}")
        elif name == "TuningTrial":
            tuning = str(event.get("tuning_job"))
            running = self._trials_running.setdefault(tuning, set())
            if event.get("status") == "InProgress":
                running.add(job)
                return
            running.discard(job)
            objective = event.get("objective")
            # stepsage's objective (valid:accuracy) is maximized.
            if isinstance(objective, int | float) and (self.best is None or objective > self.best[1]):
                self.best = (job, float(objective))
            done = self._trials_done.setdefault(tuning, set())
            done.add(job)
            stopped = " (stopped early)" if event.get("early_stopped") else ""
            score = f"objective {objective:.4g}" if isinstance(objective, int | float) else "no objective"
            best_text = f"; best so far {self.best[1]:.4g} ({self.best[0]})" if self.best else ""
            self._line(
                f"tuning {len(done)} done, {len(running)} running: {job} {event.get('status')}{stopped}, "
                f"{score}{best_text}"
            )
        elif name == "TuningJobStatus":
            reason = f": {event['failure_reason']}" if event.get("failure_reason") else ""
            self._line(f"tuning {event.get('tuning_job')} {event.get('status')}{reason}")
        elif name == "RuleEvaluationStatus":
            self._line(f"rule   {event.get('rule')} {event.get('status')}")
        elif name == "EndpointStatus":
            reason = f": {event['failure_reason']}" if event.get("failure_reason") else ""
            self._line(f"endpoint {event.get('endpoint')} {event.get('status')}{reason}")

    def state_times(self) -> dict[str, float]:
        return dict(self.state_seconds)
