"""One rule verdict from either debugger mode, and whether the deploy gate lets the run go on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stepsage_lambda.errors import ConfigurationError, RulesStillEvaluating

NO_ISSUES, ISSUES, ERROR, SKIPPED = "NoIssuesFound", "IssuesFound", "Error", "Skipped"
# Managed rule states that are not final yet: CheckRules raises and its Retry waits.
PENDING_STATES = frozenset({"InProgress", "Stopping"})
# The gates. `rules` and `strict` fail closed: rules that did not run, or a weighed rule that ended in Error,
# block the deploy like issues do (`rules` leaves the advisory rules out of what it weighs). `always` deploys
# whatever the rules say, even when they did not run; the champion/challenger check still applies after it.
GATES = ("rules", "strict", "always")
# The error the RulesBlocked state fails the run with, per reason for blocking.
BLOCKED_BY_ISSUES, BLOCKED_BY_ERRORS, BLOCKED_BY_NOT_RUN = "RuleIssuesFound", "RuleErrors", "RulesDidNotRun"


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
    result: dict[str, Any] = {"verdict": overall(r["status"] for r in rules), "rules": rules}
    if not rules:
        result["skipped_because"] = "the job's rules/verdicts.json lists no rules"
    return result


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
    result: dict[str, Any] = {"verdict": overall(r["status"] for r in rules), "rules": rules}
    if not rules:
        result["skipped_because"] = (
            "SageMaker reports no DebugRuleEvaluationStatuses for the final training job"
        )
    return result


# Rules about how long or how closely a model was fit, not about a broken run. Under the `rules` gate their
# issues are advisories: the deploy step already measures generalization itself, on the held-out split
# (champion/challenger and the smoke test). On real datasets a 10% valid/train loss gap is the norm for the
# model one wants, so gating on it would block nearly every deploy. `strict` blocks on them too.
ADVISORY_RULES = frozenset({"Overfit", "Overtraining"})


def blocking_rules(rules: Iterable[Mapping[str, Any]], gate_name: str) -> list[Mapping[str, Any]]:
    """The rules the gate weighs: all of them, except that `rules` leaves out the advisory ones."""
    return [r for r in rules if gate_name != "rules" or r["name"] not in ADVISORY_RULES]


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer: whether to deploy, the error that blocks it (None when it proceeds), and why."""

    proceed: bool
    blocked_by: str | None
    reason: str


def _names(rules: Iterable[Mapping[str, Any]], status: str) -> str:
    """The rules with `status`, each with its message when it has one."""
    named = sorted(
        f"{r['name']} ({r['message']})" if r.get("message") else str(r["name"])
        for r in rules
        if r["status"] == status
    )
    return "; ".join(named)


def not_run_reason(result: Mapping[str, Any]) -> str | None:
    """Why no rule gave an answer, or None when at least one did."""
    if result["verdict"] != SKIPPED:
        return None
    return str(result.get("skipped_because") or "no rule results were found for the final training job")


def decide(result: Mapping[str, Any], gate_name: str) -> GateDecision:
    """Whether the run may deploy, given a verdict from `from_embedded` or `from_managed`, and why."""
    if gate_name not in GATES:
        raise ConfigurationError(
            f"DEPLOY_GATE={gate_name!r} is not allowed; choose one of: {', '.join(GATES)}"
        )
    rules = list(result["rules"])
    not_run = not_run_reason(result)
    if gate_name == "always":
        said = f"the rules did not run ({not_run})" if not_run else f"the rules say {result['verdict']}"
        return GateDecision(True, None, f"{said}; DeployGate=always deploys whatever the rules say")
    if not_run:
        return GateDecision(
            False,
            BLOCKED_BY_NOT_RUN,
            f"the rules did not run: {not_run}; DeployGate={gate_name} blocks a deploy the rules did not "
            "check (DeployGate=always deploys without them)",
        )
    weighed = blocking_rules(rules, gate_name)
    if not weighed:
        return GateDecision(
            False,
            BLOCKED_BY_NOT_RUN,
            f"only advisory rules ran ({', '.join(sorted(r['name'] for r in rules))}); "
            f"DeployGate={gate_name} needs at least one of the rules that flag a broken run",
        )
    verdict = overall(r["status"] for r in weighed)
    if verdict == ISSUES:
        return GateDecision(False, BLOCKED_BY_ISSUES, f"rules found issues: {_names(weighed, ISSUES)}")
    if verdict == ERROR:
        return GateDecision(
            False,
            BLOCKED_BY_ERRORS,
            f"rules ended in Error, so they did not check the run: {_names(weighed, ERROR)}",
        )
    return GateDecision(True, None, f"DeployGate={gate_name}: no issues from {len(weighed)} rules")


def gate(result: Mapping[str, Any], gate_name: str) -> bool:
    """Whether the run may deploy (`decide` without the reason)."""
    return decide(result, gate_name).proceed
