"""CheckRules' one job: fetch the rule results for the final training job and apply the deploy gate."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rule_verdict import GATES, ISSUES, SKIPPED, blocking_rules, decide, from_embedded, from_managed

from stepsage_lambda.payloads import RulesVerdict
from stepsage_lambda.s3_api import S3Api, split_uri
from stepsage_lambda.sagemaker_api import SageMakerApi
from stepsage_lambda.settings import choice, declared

VERDICTS_MEMBER = "rules/verdicts.json"


@dataclass(frozen=True)
class RulesSettings:
    """CheckRulesFunction's environment, read once per cold start by its handler."""

    gate: str

    ENV_VARS: ClassVar[tuple[str, ...]] = ("DEPLOY_GATE",)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RulesSettings:
        return cls(gate=choice(declared(env, cls), "DEPLOY_GATE", tuple(GATES), "rules"))


def output_tarball_uri(described_job: dict[str, Any]) -> str:
    """Where SageMaker puts SM_OUTPUT_DATA_DIR's tarball: <S3OutputPath>/<job>/output/output.tar.gz."""
    base = described_job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{base}/{described_job['TrainingJobName']}/output/output.tar.gz"


def check_rules(
    *, training_job_name: str, debugger_mode: str, gate_name: str, sagemaker: SageMakerApi, s3: S3Api
) -> RulesVerdict:
    if debugger_mode == "off":
        result: dict[str, Any] = {
            "verdict": SKIPPED,
            "rules": [],
            "skipped_because": "DebuggerMode=off: the final training job ran without the hook and its rules",
        }
    else:
        described = sagemaker.describe_training_job(training_job_name)
        if debugger_mode == "managed":
            result = from_managed(described.get("DebugRuleEvaluationStatuses", []))
        else:
            tarball = output_tarball_uri(described)
            # A job that wrote no output at all has no verdicts either: the rules did not run, and the gate
            # says so instead of the step failing on S3's NoSuchKey.
            raw = s3.read_tar_member(tarball, VERDICTS_MEMBER) if s3.exists(*split_uri(tarball)) else None
            result = from_embedded(json.loads(raw) if raw is not None else None)
    advisories = [
        r["name"]
        for r in result["rules"]
        if r["status"] == ISSUES and r not in blocking_rules(result["rules"], gate_name)
    ]
    decision = decide(result, gate_name)
    return RulesVerdict.model_validate(
        {
            "verdict": result["verdict"],
            "rules": result["rules"],
            "mode": debugger_mode,
            "gate": gate_name,
            "advisories": advisories,
            "proceed": decision.proceed,
            "blocked_by": decision.blocked_by,
            "reason": decision.reason,
        }
    )
