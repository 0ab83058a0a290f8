"""Parameter overrides checked against template.yaml's own Parameters and Rules, as CloudFormation would."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stepsage.local.template import ParameterError, check_overrides, load_template, resolve_stack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
PARAMETERS: dict = TEMPLATE["Parameters"]
RNG = random.Random(9)


def test_every_default_passes() -> None:
    check_overrides(TEMPLATE, {n: str(s["Default"]) for n, s in PARAMETERS.items() if "Default" in s})


def _typos(name: str) -> list[str]:
    """Ways a user misspells a parameter: a dropped, doubled or swapped letter, the wrong case."""
    out = {name.lower(), name.upper(), name[:-1], name + "s", name[0] + name[2:]}
    for i in range(len(name) - 1):
        out.add(name[:i] + name[i + 1] + name[i] + name[i + 2 :])
    out.discard(name)
    return sorted(out)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_unknown_names_are_refused_with_the_close_match(name: str) -> None:
    for typo in _typos(name):
        if typo in PARAMETERS:
            continue
        with pytest.raises(ParameterError, match="unknown parameter") as raised:
            check_overrides(TEMPLATE, {typo: str(PARAMETERS[name].get("Default", ""))})
        assert name in str(raised.value), (typo, str(raised.value))


def test_a_name_like_nothing_lists_the_parameters() -> None:
    with pytest.raises(ParameterError, match=r"the parameters are: .*DeployGate"):
        check_overrides(TEMPLATE, {"Zzzz": "1"})


def _outside(spec: dict) -> list[str]:
    """Values the parameter's own bounds refuse, derived from the bounds."""
    bad: list[str] = []
    if "AllowedValues" in spec:
        allowed = [str(v) for v in spec["AllowedValues"]]
        bad += [v.upper() + "x" for v in allowed] + ["", " " + allowed[0], allowed[0] + " ", "none-of-these"]
    if spec.get("Type") == "Number":
        bad += ["abc", "1e", "nan", "inf", "--1"]
        if "MinValue" in spec:
            bad += [str(float(spec["MinValue"]) - d) for d in (0.5, 1, 1000)]
        if "MaxValue" in spec:
            bad += [str(float(spec["MaxValue"]) + d) for d in (0.5, 1, 1000)]
    if "AllowedPattern" in spec:
        bad += ["\n", "a" * 600, "$(rm -rf /)", "x;y", "SageMaker=1"]
    if "MaxLength" in spec:
        bad.append("a" * (int(spec["MaxLength"]) + 1))
    return bad


BOUNDED = sorted(
    n for n, s in PARAMETERS.items() if {"AllowedValues", "MinValue", "MaxValue", "AllowedPattern"} & set(s)
)


@pytest.mark.parametrize("name", BOUNDED)
def test_values_outside_the_bounds_are_refused_naming_the_bound(name: str) -> None:
    spec = PARAMETERS[name]
    cases = [v for v in _outside(spec) if v != str(spec.get("Default"))]
    assert cases
    for value in cases:
        with pytest.raises(ParameterError) as raised:
            check_overrides(TEMPLATE, {name: value})
        message = str(raised.value)
        assert message.startswith(f"parameter {name}"), message
        assert "\n" not in message.replace(repr(value), "")
        if "AllowedValues" in spec and spec.get("Type") != "Number":
            assert "must be one of" in message


@pytest.mark.parametrize("name", sorted(n for n, s in PARAMETERS.items() if "AllowedValues" in s))
def test_every_allowed_value_passes(name: str) -> None:
    for value in PARAMETERS[name]["AllowedValues"]:
        check_overrides(TEMPLATE, {name: str(value)})


RANGED = sorted(n for n, s in PARAMETERS.items() if "MinValue" in s or "MaxValue" in s)


@pytest.mark.parametrize("name", RANGED)
def test_numbers_inside_the_range_pass(name: str) -> None:
    spec = PARAMETERS[name]
    low, high = float(spec.get("MinValue", 0)), float(spec.get("MaxValue", 10_000))
    for _ in range(20):
        value = RNG.uniform(low, high)
        check_overrides(TEMPLATE, {name: str(int(value)) if int(value) >= low else str(value)})


@pytest.mark.parametrize("gate", ["rules", "strict"])
def test_debugger_off_with_a_gate_that_needs_rules_is_refused(gate: str) -> None:
    with pytest.raises(ParameterError, match=r"DebuggerMode=off .*DeployGate=always"):
        resolve_stack(ROOT / "template.yaml", overrides={"DebuggerMode": "off", "DeployGate": gate})
    if gate == "rules":  # the default gate: DebuggerMode=off alone is refused too
        with pytest.raises(ParameterError, match="DeployGate=always"):
            resolve_stack(ROOT / "template.yaml", overrides={"DebuggerMode": "off"})


@pytest.mark.parametrize("mode", ["embedded", "managed", "off"])
def test_always_deploys_with_any_debugger_mode(mode: str) -> None:
    stack = resolve_stack(ROOT / "template.yaml", overrides={"DebuggerMode": mode, "DeployGate": "always"})
    assert stack.parameters["DebuggerMode"] == mode
