"""Step Functions in the pipeline's own verbs: start a run once per name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stepsage_lambda.clients import client as default_client


@dataclass(frozen=True)
class StartResult:
    execution_arn: str
    duplicate: bool


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution of `name` has, known without a call (the name is unique per state machine)."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


class StepFunctionsApi:
    def __init__(self, sfn_client: Any | None = None) -> None:
        self._sfn = sfn_client or default_client("stepfunctions")

    def start_once(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> StartResult:
        """StartExecution; an execution that already has this name makes it a duplicate, not a failure."""
        try:
            started = self._sfn.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload, sort_keys=True)
            )
        except self._sfn.exceptions.ExecutionAlreadyExists:
            return StartResult(execution_arn(state_machine_arn, name), duplicate=True)
        return StartResult(started["executionArn"], duplicate=False)
