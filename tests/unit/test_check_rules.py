"""check_rules' verdict and gate decisions over literal rule outputs."""

from __future__ import annotations

import itertools

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


# The gate fails closed: a rule that ended in Error, or rules that did not run at all (Skipped), block the
# `rules` and `strict` gates (they used to let the run deploy); `always` deploys whatever the rules say.
@pytest.mark.parametrize(
    ("verdict", "gate", "proceed"),
    [
        ("NoIssuesFound", "rules", True),
        ("IssuesFound", "rules", False),
        ("Error", "rules", False),
        ("Skipped", "rules", False),
        ("Error", "strict", False),
        ("Skipped", "strict", False),
        ("IssuesFound", "always", True),
        ("Error", "always", True),
        ("Skipped", "always", True),
    ],
)
def test_gate_fails_closed_unless_always(verdict: str, gate: str, proceed: bool) -> None:
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


RULE_NAMES = ("VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining")
STATUSES = ("NoIssuesFound", "IssuesFound", "Error", None)  # None: the rule is not in the results


def _every_result() -> list[dict]:
    """Every combination of the four rules' outcomes, a rule absent included (256 results)."""
    results = []
    for combination in itertools.product(STATUSES, repeat=len(RULE_NAMES)):
        present = {n: s for n, s in zip(RULE_NAMES, combination, strict=True) if s is not None}
        results.append(_result(**present))
    return results


def _expected(result: dict, gate: str) -> tuple[bool, str | None]:
    """An oracle written apart from `decide`: which error, if any, blocks each gate."""
    if gate == "always":
        return True, None
    weighed = [r for r in result["rules"] if gate == "strict" or r["name"] not in ("Overfit", "Overtraining")]
    statuses = {r["status"] for r in weighed}
    if not weighed:
        return False, "RulesDidNotRun"
    if "IssuesFound" in statuses:
        return False, "RuleIssuesFound"
    if "Error" in statuses:
        return False, "RuleErrors"
    return True, None


@pytest.mark.parametrize("gate", ["rules", "strict", "always"])
def test_every_outcome_against_an_independent_oracle(gate: str) -> None:
    for result in _every_result():
        decision = rule_verdict.decide(result, gate)
        assert (decision.proceed, decision.blocked_by) == _expected(result, gate), (result, decision)
        assert decision.reason, result
        if decision.blocked_by == "RuleErrors":
            errored = [r["name"] for r in result["rules"] if r["status"] == "Error"]
            assert any(name in decision.reason for name in errored), decision.reason
        if gate == "always":
            assert "DeployGate=always" in decision.reason


def test_rules_that_did_not_run_say_what_is_missing() -> None:
    no_file = rule_verdict.decide(rule_verdict.from_embedded(None), "rules")
    assert (no_file.proceed, no_file.blocked_by) == (False, "RuleErrors")
    assert "no rules/verdicts.json" in no_file.reason
    empty_file = rule_verdict.decide(rule_verdict.from_embedded({"rules": []}), "rules")
    assert (empty_file.proceed, empty_file.blocked_by) == (False, "RulesDidNotRun")
    assert "lists no rules" in empty_file.reason
    no_statuses = rule_verdict.decide(rule_verdict.from_managed([]), "strict")
    assert (no_statuses.proceed, no_statuses.blocked_by) == (False, "RulesDidNotRun")
    assert "DebugRuleEvaluationStatuses" in no_statuses.reason
    anyway = rule_verdict.decide(rule_verdict.from_managed([]), "always")
    assert anyway.proceed and "did not run" in anyway.reason and "DeployGate=always" in anyway.reason


@pytest.mark.parametrize("state", ["Error", "Stopped", "IssuesFound", "NoIssuesFound", "SomethingNew"])
def test_managed_final_states_of_a_blocking_rule(state: str) -> None:
    statuses = [{"RuleConfigurationName": "VanishingGradient", "RuleEvaluationStatus": state}]
    decision = rule_verdict.decide(rule_verdict.from_managed(statuses), "rules")
    assert decision.proceed is (state == "NoIssuesFound")
    if state not in ("IssuesFound", "NoIssuesFound"):
        assert decision.blocked_by == "RuleErrors" and "VanishingGradient" in decision.reason


def test_only_advisory_rules_do_not_satisfy_the_rules_gate() -> None:
    decision = rule_verdict.decide(_result(Overfit="NoIssuesFound"), "rules")
    assert (decision.proceed, decision.blocked_by) == (False, "RulesDidNotRun")
    assert "only advisory rules ran" in decision.reason
    assert rule_verdict.gate(_result(Overfit="NoIssuesFound"), "strict") is True
