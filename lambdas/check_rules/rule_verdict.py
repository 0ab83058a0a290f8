"""One rule verdict from either debugger mode, and whether the deploy gate lets the run go on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stepsage_lambda.errors import ConfigurationError, RulesStillEvaluating

NO_ISSUES, ISSUES, ERROR, SKIPPED = "NoIssuesFound", "IssuesFound", "Error", "Skipped"
# Managed rule states that are not final yet: CheckRules raises and its Retry waits.
PENDING_STATES = frozenset({"InProgress", "Stopping"})
# How the gate treats each verdict: `rules` blocks on issues only, `strict` also when a rule errored.
GATES: dict[str, frozenset[str]] = {
    "rules": frozenset({NO_ISSUES, ERROR, SKIPPED}),
    "strict": frozenset({NO_ISSUES, SKIPPED}),
    "always": frozenset({NO_ISSUES, ISSUES, ERROR, SKIPPED}),
}


def overall(statuses: Iterable[str]) -> str:
    """IssuesFound beats Error beats NoIssuesFound; no rules at all is Skipped."""
    seen = set(statuses)
    if not seen:
        return SKIPPED
    if ISSUES in seen:
        return ISSUES
    return ERROR if seen - {NO_ISSUES} else NO_ISSUES


def from_embedded(verdicts: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our rules' `rules/verdicts.json` (None when the job wrote none, e.g. smdebug was missing)."""
    if verdicts is None:
        rules = [
            {"name": "embedded-rules", "status": ERROR, "message": "the job wrote no rules/verdicts.json"}
        ]
    else:
        rules = [
            {"name": r["name"], "status": r["status"], "message": r.get("message", "")}
            for r in verdicts.get("rules", [])
        ]
    return {"verdict": overall(r["status"] for r in rules), "rules": rules}


def from_managed(evaluation_statuses: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """SageMaker's DebugRuleEvaluationStatuses; raises RulesStillEvaluating while any rule runs."""
    statuses = list(evaluation_statuses)
    pending = [
        s["RuleConfigurationName"] for s in statuses if s.get("RuleEvaluationStatus") in PENDING_STATES
    ]
    if pending:
        raise RulesStillEvaluating(f"rules still evaluating: {', '.join(sorted(pending))}")
    rules = [
        {
            "name": s["RuleConfigurationName"],
            # A stopped rule gave no answer, which is an error for the gate's purposes.
            "status": s["RuleEvaluationStatus"]
            if s["RuleEvaluationStatus"] in (NO_ISSUES, ISSUES)
            else ERROR,
            "message": s.get("StatusDetails", ""),
        }
        for s in statuses
    ]
    return {"verdict": overall(r["status"] for r in rules), "rules": rules}


# Rules about how long or how closely a model was fit, not about a broken run. Under the `rules` gate their
# issues are advisories: the deploy step already measures generalization itself, on the held-out split
# (champion/challenger and the smoke test). On real datasets a 10% valid/train loss gap is the norm for the
# model one wants, so gating on it would block nearly every deploy. `strict` blocks on them too.
ADVISORY_RULES = frozenset({"Overfit", "Overtraining"})


def blocking_rules(rules: Iterable[Mapping[str, Any]], gate_name: str) -> list[Mapping[str, Any]]:
    """The rules the gate weighs: all of them, except that `rules` leaves out the advisory ones."""
    return [r for r in rules if gate_name != "rules" or r["name"] not in ADVISORY_RULES]


def gate(result: Mapping[str, Any], gate_name: str) -> bool:
    """Whether the run may deploy, given a verdict from `from_embedded` or `from_managed`."""
    if gate_name not in GATES:
        raise ConfigurationError(
            f"DEPLOY_GATE={gate_name!r} is not allowed; choose one of: {', '.join(GATES)}"
        )
    if result["verdict"] == SKIPPED:
        return SKIPPED in GATES[gate_name]
    weighed = overall(r["status"] for r in blocking_rules(result["rules"], gate_name))
    return weighed in GATES[gate_name] or weighed == SKIPPED
