"""Live progress of a local run: pipeline states, tuning trials and epochs, as plain lines."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    keys = ("train_loss", "valid_loss", "valid_accuracy")
    picked = [f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), int | float)]
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
        self.best: dict[str, float] = {}
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
        if name == "TrainingJobStatus":
            status = event.get("status")
            if status in ("InProgress",):
                self._line(f"job    {event.get('job')} started")
            elif status:
                reason = f" ({event.get('failure_reason')})" if event.get("failure_reason") else ""
                self._line(f"job    {event.get('job')} {status}{reason}")
        elif name == "Epoch" and self.show_epochs:
            self._line(
                f"epoch  {event.get('job')} #{event.get('epoch')} {_fmt_metrics(event.get('metrics') or {})}"
            )
        elif name == "TuningProgress" or name == "HyperParameterTuningJobStatus":
            counters = event.get("counters") or {}
            best = event.get("best")
            parts = [f"{k.lower()}={v}" for k, v in counters.items() if v]
            best_text = f" best={best:.4g}" if isinstance(best, int | float) else ""
            self._line(
                f"tuning {event.get('tuning_job', event.get('job', ''))} {event.get('status', '')} "
                f"{' '.join(parts)}{best_text}".rstrip()
            )
        elif name == "RuleEvaluationStatus":
            self._line(f"rule   {event.get('rule')} {event.get('status')}")
        elif name and str(name).startswith("Endpoint"):
            self._line(f"endpoint {event.get('endpoint', '')} {event.get('status', '')}")

    def state_times(self) -> dict[str, float]:
        return dict(self.state_seconds)
