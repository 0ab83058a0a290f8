"""check_rules' verdict and gate decisions over literal rule outputs."""

from __future__ import annotations

import pytest
from events_fixture import load_lambda_module

pytestmark = pytest.mark.unit

rule_verdict = load_lambda_module("check_rules", "rule_verdict")
from stepsage_lambda.errors import ConfigurationError, RulesStillEvaluating  # noqa: E402


def test_embedded_verdicts_reduce_to_one() -> None:
    verdicts = {
        "rules": [
            {"name": "VanishingGradient", "status": "NoIssuesFound", "params": {"threshold": 1e-7}},
            {"name": "Overfit", "status": "IssuesFound", "message": "valid loss 40% above train"},
            {"name": "ExplodingTensor", "status": "Error", "message": "no tensors"},
        ],
        "issues_found": True,
    }
    result = rule_verdict.from_embedded(verdicts)
    assert result["verdict"] == "IssuesFound"
    assert [r["name"] for r in result["rules"]] == ["VanishingGradient", "Overfit", "ExplodingTensor"]
    assert result["rules"][1]["message"] == "valid loss 40% above train"


def test_missing_embedded_verdicts_are_an_error_not_a_pass() -> None:
    assert rule_verdict.from_embedded(None)["verdict"] == "Error"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "Skipped"),
        (["NoIssuesFound", "NoIssuesFound"], "NoIssuesFound"),
        (["NoIssuesFound", "Error"], "Error"),
        (["Error", "IssuesFound"], "IssuesFound"),
    ],
)
def test_overall_precedence(statuses: list[str], expected: str) -> None:
    assert rule_verdict.overall(statuses) == expected


def test_managed_rules_still_running_raise_the_retryable_error() -> None:
    statuses = [
        {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "NoIssuesFound"},
        {"RuleConfigurationName": "LossNotDecreasing", "RuleEvaluationStatus": "InProgress"},
    ]
    with pytest.raises(RulesStillEvaluating, match="LossNotDecreasing"):
        rule_verdict.from_managed(statuses)
    # The class name is the error name the state machine's Retry matches.
    assert RulesStillEvaluating.__name__ == "RulesStillEvaluating"


def test_managed_rules_done() -> None:
    statuses = [
        {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "IssuesFound", "StatusDetails": "gap"},
        {"RuleConfigurationName": "VanishingGradient", "RuleEvaluationStatus": "Stopped"},
    ]
    result = rule_verdict.from_managed(statuses)
    assert result["verdict"] == "IssuesFound"
    assert result["rules"] == [
        {"name": "Overfit", "status": "IssuesFound", "message": "gap"},
        {"name": "VanishingGradient", "status": "Error", "message": ""},
    ]


@pytest.mark.parametrize(
    ("verdict", "gate", "proceed"),
    [
        ("NoIssuesFound", "rules", True),
        ("IssuesFound", "rules", False),
        ("Error", "rules", True),
        ("Error", "strict", False),
        ("Skipped", "strict", True),
        ("IssuesFound", "always", True),
    ],
)
def test_gate(verdict: str, gate: str, proceed: bool) -> None:
    rules = [] if verdict == "Skipped" else [{"name": "VanishingGradient", "status": verdict, "message": ""}]
    assert rule_verdict.gate({"verdict": verdict, "rules": rules}, gate) is proceed


def _result(**statuses: str) -> dict:
    rules = [{"name": name, "status": status, "message": ""} for name, status in statuses.items()]
    return {"verdict": rule_verdict.overall(r["status"] for r in rules), "rules": rules}


def test_overfit_and_overtraining_are_advisories_under_the_rules_gate_only() -> None:
    fitted = _result(Overfit="IssuesFound", Overtraining="IssuesFound", VanishingGradient="NoIssuesFound")
    assert rule_verdict.gate(fitted, "rules") is True
    assert rule_verdict.gate(fitted, "strict") is False
    broken = _result(Overfit="IssuesFound", LossNotDecreasing="IssuesFound")
    assert rule_verdict.gate(broken, "rules") is False
    assert [r["name"] for r in rule_verdict.blocking_rules(broken["rules"], "rules")] == ["LossNotDecreasing"]


def test_unknown_gate_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="rules, strict, always"):
        rule_verdict.gate(_result(Overfit="NoIssuesFound"), "sometimes")
