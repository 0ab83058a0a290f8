"""Facts read from a Step Functions execution history: job names, the state document, the end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Service integrations, as `resourceType:resource` in TaskScheduled events and as the suffix of a Task's
# `Resource` in the definition (arn:aws:states:::sagemaker:createTrainingJob.sync).
TUNING_RESOURCE = "sagemaker:createHyperParameterTuningJob"
TRAINING_RESOURCE = "sagemaker:createTrainingJob"
JOB_NAME_PARAMETER = {TUNING_RESOURCE: "HyperParameterTuningJobName", TRAINING_RESOURCE: "TrainingJobName"}


@dataclass
class JobReference:
    """A SageMaker job that a state started: its name, the state, and how its last attempt ended."""

    name: str
    state: str
    status: str  # succeeded | failed | running


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None


def integration_of(resource: str) -> str | None:
    """`sagemaker:createTrainingJob` for `arn:aws:states:::sagemaker:createTrainingJob.sync` (or the
    history's `sagemaker` + `createTrainingJob.sync`); None for Lambda ARNs and other resources."""
    tail = resource.split(":::", 1)[1] if ":::" in resource else resource
    base = tail.split(".", 1)[0]
    return base if base in JOB_NAME_PARAMETER else None


def task_resources(definition: dict[str, Any]) -> dict[str, str]:
    """State name -> integration (`sagemaker:createTrainingJob`...) for the Task states that start jobs."""
    found: dict[str, str] = {}

    def walk(states: dict[str, Any]) -> None:
        for name, state in states.items():
            integration = integration_of(str(state.get("Resource", "")))
            if state.get("Type") == "Task" and integration:
                found[name] = integration
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(processor.get("States", {}))

    walk(definition.get("States", {}))
    return found


def sagemaker_jobs(events: list[dict[str, Any]], definition: dict[str, Any]) -> dict[str, JobReference]:
    """The last job of each kind (tuning, training) that the execution started, keyed by integration.

    The name comes from the TaskScheduled parameters, so a job whose state failed is still found; when the
    history was read without execution data, the TaskSucceeded output (the job's Describe) names it."""
    by_state = task_resources(definition)
    jobs: dict[str, JobReference] = {}
    current: str | None = None
    for event in events:
        kind = str(event.get("type", ""))
        details = _details(event)
        if kind.endswith("StateEntered"):
            current = details.get("name")
            continue
        if not kind.startswith("Task") or kind.endswith(("StateExited", "StateAborted")):
            continue
        integration = integration_of(f"{details.get('resourceType', '')}:{details.get('resource', '')}")
        if integration is None and current in by_state and details.get("resourceType") == "sagemaker":
            integration = by_state[current]
        if integration is None:
            continue
        parameter = JOB_NAME_PARAMETER[integration]
        if kind == "TaskScheduled":
            name = (_json(details.get("parameters")) or {}).get(parameter)
            if name:
                jobs[integration] = JobReference(str(name), str(current), "running")
        elif kind in ("TaskSubmitted", "TaskSucceeded"):
            described = _json(details.get("output")) or {}
            name = described.get(parameter) if isinstance(described, dict) else None
            reference = jobs.get(integration)
            if name and (reference is None or reference.name != name):
                reference = jobs[integration] = JobReference(str(name), str(current), "running")
            if reference is not None and kind == "TaskSucceeded":
                reference.status = "succeeded"
        elif kind in ("TaskFailed", "TaskTimedOut") and integration in jobs:
            jobs[integration].status = "failed"
    return jobs


def state_document(events: list[dict[str, Any]], execution_output: Any = None) -> dict[str, Any]:
    """The execution's data as far as it got: its output, else the newest state output or input."""
    output = _json(execution_output)
    if isinstance(output, dict):
        return output
    for event in reversed(events):
        details = _details(event)
        kind = str(event.get("type", ""))
        for key in ("output", "input") if kind.endswith("StateExited") else ("input",):
            if kind.endswith(("StateExited", "StateEntered")) or kind == "ExecutionStarted":
                document = _json(details.get(key))
                if isinstance(document, dict):
                    return document
    return {}


def execution_end(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The terminal event's error and cause, when the execution failed, timed out or was aborted."""
    for event in reversed(events):
        kind = str(event.get("type", ""))
        if kind in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            details = _details(event)
            return {"type": kind, "error": details.get("error"), "cause": details.get("cause")}
    return {}
