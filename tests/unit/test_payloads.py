"""Step payloads: the sample events parse into the models; each step's result feeds the next via the ASL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from events_fixture import ASL_PATH, load_event, load_lambda_module
from pydantic import BaseModel, ValidationError

pytestmark = pytest.mark.unit

stage_request = load_lambda_module("stage_data", "stage_request")
final_training = load_lambda_module("select_best", "final_training")
from stepsage_lambda import payloads as p  # noqa: E402

EXECUTION = "digits-1c0f6a2d9b3e"
ASL: dict[str, Any] = json.loads(ASL_PATH.read_text())
STATES: dict[str, Any] = ASL["States"]


@pytest.mark.parametrize(
    ("event", "model"),
    [
        ("stage_data", stage_request.StageDataEvent),
        ("stage_data_folder", stage_request.StageDataEvent),
        ("launch_hpo", p.LaunchHpoInput),
        ("select_best", p.SelectBestInput),
        ("check_rules", p.CheckRulesInput),
        ("deploy", p.DeployInput),
        ("smoke_test", p.SmokeTestInput),
    ],
)
def test_sample_events_parse_into_the_step_models(event: str, model: type[BaseModel]) -> None:
    # A round trip gives the event back: the models name every field the samples carry, and no more.
    assert model.model_validate(load_event(event)).model_dump(mode="json") == load_event(event)


def test_our_payloads_refuse_unknown_fields_and_aws_picks_ignore_them() -> None:
    dataset = load_event("deploy")["dataset"]
    with pytest.raises(ValidationError, match="extra"):
        p.StagedDataset.model_validate({**dataset, "renamed_field": 1})
    assert (
        p.TrainingJobResult.model_validate(
            {"name": "j", "status": "Completed", "model_artifacts": "s3://b/m.tar.gz", "Later": "x"}
        ).name
        == "j"
    )


def test_staged_dataset_names_its_manifest() -> None:
    dataset = load_event("deploy")["dataset"]
    with pytest.raises(ValidationError, match="manifest"):
        p.StagedDataset.model_validate({**dataset, "manifest": "s3://b/staged/digits/x/files.json"})


# --- the chain: each result, placed at its ResultPath, is what the next state's Parameters read ---------

DATASET = p.StagedDataset.model_validate(load_event("deploy")["dataset"])
REQUEST = {field: {} for field in final_training.BASE_FIELDS + final_training.MANAGED_FIELDS}
# What each Lambda Task returns (its result model, as JSON) and the model its event parses into.
LAMBDA_STEPS: dict[str, tuple[type[BaseModel], BaseModel]] = {
    "StageData": (stage_request.StageDataEvent, DATASET),
    "LaunchHPO": (
        p.LaunchHpoInput,
        p.TuningPlan(
            request=p.TuningJobRequest(HyperParameterTuningJobConfig={}, TrainingJobDefinition={}, Tags=[]),
            code_uri="s3://b/code/sourcedir-0123456789abcdef.tar.gz",
            strategy="Bayesian",
        ),
    ),
    "SelectBest": (
        p.SelectBestInput,
        p.Selection(
            best=p.BestJob(
                training_job_name=f"{EXECUTION}-h0-001-1a2b3c4d",
                tuned_hyperparameters={"lr": "0.003"},
                objective=p.Objective(name="valid:accuracy", value=0.96),
                model_artifacts="s3://b/runs/x/tuning/j/output/model.tar.gz",
            ),
            final=p.FinalTraining(debugger_mode="embedded", request=REQUEST),
        ),
    ),
    "CheckRules": (
        p.CheckRulesInput,
        p.RulesVerdict(
            verdict="NoIssuesFound",
            rules=[],
            mode="embedded",
            gate="rules",
            advisories=[],
            proceed=True,
            blocked_by=None,
            reason="DeployGate=rules: no issues from 4 rules",
        ),
    ),
    "Deploy": (p.DeployInput, p.Deployment.model_validate(load_event("smoke_test")["deployment"])),
    "SmokeTest": (
        p.SmokeTestInput,
        p.SmokeTestPassed(
            endpoint_name="stepsage-digits",
            accuracy=1.0,
            images=20,
            failed_calls=0,
            expected_accuracy=0.97,
            threshold=0.87,
            pruned=[],
        ),
    ),
}
# What the SageMaker .sync Tasks' ResultSelectors see, and the models their picks parse into.
SERVICE_STEPS: dict[str, tuple[dict[str, Any], type[BaseModel]]] = {
    "RunHPO": (
        {"HyperParameterTuningJobName": f"{EXECUTION}-h0", "HyperParameterTuningJobStatus": "Completed"},
        p.TuningJobResult,
    ),
    "TrainFinal": (
        {
            "TrainingJobName": f"{EXECUTION}-final-0",
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/runs/x/final/j/output/model.tar.gz"},
        },
        p.TrainingJobResult,
    ),
}


def _read(document: Any, path: str) -> Any:
    """A JSONPath of the ASL's plain `$.a.b` form (and `$$.Execution.Name`) against `document`."""
    if path == "$$.Execution.Name":
        return EXECUTION
    value = document
    for part in path.removeprefix("$").split(".")[1:]:
        assert isinstance(value, dict) and part in value, f"{path}: no {part!r} in {sorted(value)}"
        value = value[part]
    return value


def _resolve(template: dict[str, Any], document: Any) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if value.startswith("States."):
                continue  # intrinsic functions build names, not payload fields
            resolved[key[:-2]] = _read(document, value)
        else:
            resolved[key] = _resolve(value, document) if isinstance(value, dict) else value
    return resolved


def _put(document: dict[str, Any], result_path: str, value: Any) -> None:
    *parents, last = result_path.removeprefix("$.").split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[last] = value


def _success_path() -> list[str]:
    """The Task states a deploying run passes, in order (Choices take the branch that goes on)."""
    order, name = [], ASL["StartAt"]
    while True:
        state = STATES[name]
        if state["Type"] == "Task":
            order.append(name)
        if name == "SmokeTest":
            return order
        if state["Type"] == "Choice":
            name = state["Default"] if name == "FinalTrainingMode" else state["Choices"][0]["Next"]
        else:
            name = state["Next"]


def test_each_step_result_parses_as_the_next_steps_input() -> None:
    document: dict[str, Any] = load_event("pipeline_input")
    seen = []
    for name in _success_path():
        state = STATES[name]
        if name in LAMBDA_STEPS:
            event_model, result = LAMBDA_STEPS[name]
            event_model.model_validate(_resolve(state["Parameters"], document))
            _put(document, state["ResultPath"], result.model_dump(mode="json"))
        elif name in SERVICE_STEPS:
            _resolve(state["Parameters"], document)  # every field it passes by path is there
            response, pick_model = SERVICE_STEPS[name]
            picked = pick_model.model_validate(_resolve(state["ResultSelector"], response))
            _put(document, state["ResultPath"], picked.model_dump(mode="json"))
        elif name == "DescribeEndpoint":
            _resolve(state["Parameters"], document)
            _put(document, state["ResultPath"], {"status": "InService", "config": "c"})
        seen.append(name)
    assert set(LAMBDA_STEPS) | set(SERVICE_STEPS) <= set(seen), seen


def test_choice_states_read_fields_the_models_have() -> None:
    document: dict[str, Any] = {
        "selection": LAMBDA_STEPS["SelectBest"][1].model_dump(mode="json"),
        "rules": LAMBDA_STEPS["CheckRules"][1].model_dump(mode="json"),
        "deployment": LAMBDA_STEPS["Deploy"][1].model_dump(mode="json"),
    }
    kept = p.ChampionKept(
        endpoint_name="stepsage-digits",
        comparison=p.Deployment.model_validate(load_event("smoke_test")["deployment"]).comparison,
        expected_accuracy=0.9,
        previous_endpoint_config_name=None,
    )
    for state in STATES.values():
        for choice in state.get("Choices", []):
            for rule in choice.get("And", []) + choice.get("Or", []) + [choice]:
                for key in ("Variable", "StringEqualsPath"):
                    path = rule.get(key, "")
                    if path.startswith(("$.selection", "$.rules", "$.deployment")):
                        _read(document, path)
                        if path == "$.deployment.deployed":
                            _read({"deployment": kept.model_dump(mode="json")}, path)
