"""Static checks AWS makes on a state machine's transitions, which moto's parser leaves to run time."""

from __future__ import annotations

from typing import Any

_TERMINAL_TYPES = {"Succeed", "Fail"}


def _targets(state: dict, path: str) -> list[tuple[str, str]]:
    """Every (target state name, JSON pointer) a state can move to."""
    targets: list[tuple[str, str]] = []
    if isinstance(state.get("Next"), str):
        targets.append((state["Next"], f"{path}/Next"))
    if isinstance(state.get("Default"), str):
        targets.append((state["Default"], f"{path}/Default"))
    for index, choice in enumerate(state.get("Choices") or []):
        if isinstance(choice, dict) and isinstance(choice.get("Next"), str):
            targets.append((choice["Next"], f"{path}/Choices[{index}]/Next"))
    for index, catcher in enumerate(state.get("Catch") or []):
        if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
            targets.append((catcher["Next"], f"{path}/Catch[{index}]/Next"))
    return targets


def _nested_machines(state: dict, path: str) -> list[tuple[dict, str]]:
    machines: list[tuple[dict, str]] = []
    for index, branch in enumerate(state.get("Branches") or []):
        machines.append((branch, f"{path}/Branches[{index}]"))
    for key in ("ItemProcessor", "Iterator"):
        if isinstance(state.get(key), dict):
            machines.append((state[key], f"{path}/{key}"))
    return machines


def check_transitions(machine: Any, path: str = "") -> list[str]:
    """AWS-worded problems: StartAt, Next/Default/Catch targets, missing Next or End, unreachable states."""
    if not isinstance(machine, dict):
        return [f"SCHEMA_VALIDATION_FAILED: The definition must be a JSON object at {path or '/'}"]
    states = machine.get("States")
    start_at = machine.get("StartAt")
    if not isinstance(states, dict) or not states:
        return [f"SCHEMA_VALIDATION_FAILED: The field 'States' is required at {path or '/'}"]
    if not isinstance(start_at, str):
        return [f"SCHEMA_VALIDATION_FAILED: The field 'StartAt' is required at {path or '/'}"]
    problems: list[str] = []
    if start_at not in states:
        problems.append(f"MISSING_TRANSITION_TARGET: Missing 'Next' target: {start_at} at {path}/StartAt")
    for name, state in states.items():
        state_path = f"{path}/States/{name}"
        if not isinstance(state, dict):
            problems.append(f"SCHEMA_VALIDATION_FAILED: A state must be a JSON object at {state_path}")
            continue
        for target, target_path in _targets(state, state_path):
            if target not in states:
                problems.append(
                    f"MISSING_TRANSITION_TARGET: Missing 'Next' target: {target} at {target_path}"
                )
        state_type = state.get("Type")
        ends = state.get("End") is True or state_type in _TERMINAL_TYPES or state_type == "Choice"
        if not ends and "Next" not in state:
            problems.append(
                f"SCHEMA_VALIDATION_FAILED: The field 'Next' or 'End' is required at {state_path}"
            )
        for nested, nested_path in _nested_machines(state, state_path):
            problems.extend(check_transitions(nested, nested_path))
    reachable = _reachable(states, start_at)
    for name in states:
        if name not in reachable:
            problems.append(
                f'MISSING_TRANSITION_TARGET: State "{name}" is not reachable. at {path}/States/{name}'
            )
    return problems


def _reachable(states: dict, start_at: str) -> set[str]:
    seen: set[str] = set()
    pending = [start_at]
    while pending:
        name = pending.pop()
        if name in seen or not isinstance(states.get(name), dict):
            continue
        seen.add(name)
        pending.extend(target for target, _ in _targets(states[name], ""))
    return seen
