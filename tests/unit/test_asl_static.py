"""Static checks of state_machine/pipeline.asl.json: shape, error handling, placeholders and name limits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from events_fixture import ASL_PATH, load_lambda_module

pytestmark = pytest.mark.unit

load_lambda_module("select_best", "final_training")  # puts the layer and select_best's modules on the path
import final_training  # noqa: E402

from stepsage_lambda import errors, naming  # noqa: E402

KNOWN_PLACEHOLDERS = {
    "StageDataFunctionArn",
    "LaunchHpoFunctionArn",
    "SelectBestFunctionArn",
    "CheckRulesFunctionArn",
    "DeployFunctionArn",
    "SmokeTestFunctionArn",
    "SageMakerRoleArn",
    "ServingRoleArn",
    "NotificationTopicArn",
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
NOTIFY, FAIL = "NotifyFailure", "PipelineFailed"
FAILURE_NAME, STEP_FAILED = "FailureName", "PipelineStepFailed"


@pytest.fixture(scope="module")
def raw() -> str:
    return ASL_PATH.read_text()


@pytest.fixture(scope="module")
def asl(raw: str) -> dict[str, Any]:
    return json.loads(raw)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [key, *_strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in asl["States"].items() if s["Type"] == "Task"}


def _targets(state: dict[str, Any]) -> list[str]:
    found = [state["Next"]] if "Next" in state else []
    found += [c["Next"] for c in state.get("Catch", [])]
    found += [c["Next"] for c in state.get("Choices", [])]
    if "Default" in state:
        found.append(state["Default"])
    return found


def test_is_jsonpath_and_every_transition_lands_on_a_state(asl: dict[str, Any]) -> None:
    assert asl["QueryLanguage"] == "JSONPath"
    states = asl["States"]
    assert asl["StartAt"] in states
    for name, state in states.items():
        for target in _targets(state):
            assert target in states, f"{name} -> {target}"


def test_every_state_is_reachable(asl: dict[str, Any]) -> None:
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_targets(asl["States"][name]))
    assert seen == set(asl["States"])


def test_every_task_has_timeout_retry_and_catch_to_the_notify_then_fail_path(asl: dict[str, Any]) -> None:
    for name, task in _tasks(asl).items():
        assert isinstance(task.get("TimeoutSeconds"), int) and task["TimeoutSeconds"] > 0, name
        assert task.get("Retry"), name
        for retrier in task["Retry"]:
            assert "States.ALL" not in retrier["ErrorEquals"], f"{name} must not retry every error"
        catch_all = [c for c in task.get("Catch", []) if c["ErrorEquals"] == ["States.ALL"]]
        assert catch_all, name
        expected = FAILURE_NAME if name == NOTIFY else NOTIFY
        assert catch_all[0]["Next"] == expected, name
        if name != NOTIFY:
            assert catch_all[0]["ResultPath"] == "$.error", name


def test_the_failure_path_publishes_then_fails_with_the_original_error(asl: dict[str, Any]) -> None:
    notify, fail = asl["States"][NOTIFY], asl["States"][FAIL]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert notify["Parameters"]["TopicArn"] == "${NotificationTopicArn}"
    # ResultPath null keeps $.error for the Fail state, and a failed publish keeps it too.
    assert notify["ResultPath"] is None and notify["Next"] == FAILURE_NAME
    assert notify["Catch"][0]["ResultPath"] not in ("$", "$.error")
    assert fail == {**fail, "Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    # A Fail state may not raise the service's reserved States.* names: those end as PipelineStepFailed.
    choice = asl["States"][FAILURE_NAME]
    assert choice["Choices"] == [
        {"Variable": "$.error.Error", "StringMatches": "States.*", "Next": STEP_FAILED}
    ]
    assert choice["Default"] == FAIL
    step_failed = asl["States"][STEP_FAILED]
    assert step_failed == {**step_failed, "Type": "Fail", "Error": STEP_FAILED, "CausePath": "$.error.Cause"}
    # Pass states that turn a verdict into a failure build the same {Error, Cause} shape a Catch does.
    for name, state in asl["States"].items():
        if state["Type"] == "Pass" and state.get("Next") == NOTIFY:
            assert state["ResultPath"] == "$.error" and {"Error", "Cause.$"} <= set(state["Parameters"]), name


def test_placeholders_are_known_and_only_inside_strings(raw: str, asl: dict[str, Any]) -> None:
    in_strings = [p for s in _strings(asl) for p in PLACEHOLDER.findall(s)]
    assert set(in_strings) <= KNOWN_PLACEHOLDERS
    # Every occurrence in the file is one of those inside a JSON string: none stands as a bare value.
    assert len(PLACEHOLDER.findall(raw)) == len(in_strings)
    assert "${" not in re.sub(PLACEHOLDER, "", raw)
    assert {"SageMakerRoleArn", "NotificationTopicArn", "StageDataFunctionArn"} <= set(in_strings)


def test_typed_errors_the_retries_wait_for_exist_in_the_lambdas(asl: dict[str, Any]) -> None:
    retried = {e for task in _tasks(asl).values() for r in task["Retry"] for e in r["ErrorEquals"]}
    custom = {e for e in retried if "." not in e and e != "ThrottlingException"}
    assert custom == {"RulesStillEvaluating", "EndpointBusy"}
    for name in custom:
        assert issubclass(getattr(errors, name), errors.StepsageError)


def _format_templates(asl: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Parameter -> (States.Format template, largest RetryCount the state can reach) for job names."""
    found = {}
    for name, task in _tasks(asl).items():
        attempts = max((r.get("MaxAttempts", 3) for r in task["Retry"]), default=0)
        for key, value in task.get("Parameters", {}).items():
            if key.endswith("JobName.$"):
                match = re.fullmatch(
                    r"States\.Format\('([^']*)', \$\$\.Execution\.Name, \$\$\.State\.RetryCount\)", value
                )
                assert match, f"{name}.{key} must derive from the execution name and retry count"
                found[f"{name}.{key}"] = (match.group(1), attempts)
    return found


def test_job_names_fit_sagemaker_limits_for_the_longest_execution_name(asl: dict[str, Any]) -> None:
    longest = naming.execution_name("b" * 63, "datasets/" + "x" * 900 + ".zip", "v" * 100, "x" * 900)
    assert len(longest) == naming.EXECUTION_NAME_MAX
    templates = _format_templates(asl)
    assert set(templates) == {
        "RunHPO.HyperParameterTuningJobName.$",
        "TrainFinal.TrainingJobName.$",
        "TrainFinalManaged.TrainingJobName.$",
    }
    for where, (template, attempts) in templates.items():
        assert attempts <= naming.LONGEST_RETRY_COUNT
        job = template.replace("{}", longest, 1).replace("{}", str(attempts), 1)
        limit = naming.TUNING_JOB_NAME_MAX if where.startswith("RunHPO") else naming.TRAINING_JOB_NAME_MAX
        assert len(job) <= limit and naming.SAGEMAKER_NAME.match(job), (where, job)
    # The helpers the tests and docs use build the very names the ASL builds.
    assert templates["RunHPO.HyperParameterTuningJobName.$"][0].replace("{}", "e", 1).replace("{}", "7") == (
        naming.tuning_job_name("e", 7)
    )
    assert templates["TrainFinal.TrainingJobName.$"][0].replace("{}", "e", 1).replace("{}", "7") == (
        naming.final_training_job_name("e", 7)
    )


def test_final_training_states_pass_exactly_the_fields_select_best_builds(asl: dict[str, Any]) -> None:
    def passed(state: str) -> set[str]:
        params = asl["States"][state]["Parameters"]
        return {k[: -len(".$")] for k, v in params.items() if v.startswith("$.selection.final.request.")}

    assert passed("TrainFinal") == set(final_training.BASE_FIELDS)
    assert passed("TrainFinalManaged") == set(final_training.BASE_FIELDS + final_training.MANAGED_FIELDS)
    choice = asl["States"]["FinalTrainingMode"]["Choices"][0]
    assert (choice["StringEquals"], choice["Next"]) == ("managed", "TrainFinalManaged")


def test_sagemaker_steps_use_native_integrations(asl: dict[str, Any]) -> None:
    states = asl["States"]
    assert states["RunHPO"]["Resource"] == "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync"
    assert states["TrainFinal"]["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert states["DescribeEndpoint"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
    assert states["WaitForEndpoint"]["Type"] == "Wait"
    # The endpoint loop is bounded: the poll counter leads out of it.
    assert any(c.get("NumericGreaterThanEquals") for c in states["EndpointReady"]["Choices"])


def test_rules_retry_is_bounded_backoff(asl: dict[str, Any]) -> None:
    retrier = next(
        r for r in asl["States"]["CheckRules"]["Retry"] if r["ErrorEquals"] == ["RulesStillEvaluating"]
    )
    assert retrier["BackoffRate"] > 1 and 0 < retrier["MaxAttempts"] <= 20 and retrier["MaxDelaySeconds"] > 0


def test_moto_asl_parser_accepts_the_substituted_definition(raw: str) -> None:
    parser = pytest.importorskip("moto.stepfunctions.parser.asl.parse.asl_parser")

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.endswith("FunctionArn"):
            return f"arn:aws:lambda:us-east-1:123456789012:function:{name.removesuffix('Arn')}"
        if name == "NotificationTopicArn":
            return "arn:aws:sns:us-east-1:123456789012:stepsage-notices"
        return "arn:aws:iam::123456789012:role/stepsage-sagemaker"

    program, _ = parser.AmazonStateLanguageParser.parse(PLACEHOLDER.sub(value, raw))
    assert program is not None
