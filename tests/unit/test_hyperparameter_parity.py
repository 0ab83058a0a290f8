"""contracts/hyperparameters.py is the one owner: the template, LaunchHpo, SelectBest and train.py agree."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest
from events_fixture import ROOT, load_event, load_lambda_module

from contracts import hyperparameters as contract
from stepsage.aws import cfn_yaml

sys.path.insert(0, str(ROOT / "training_code"))
import architectures
import presets
import train

tuning_request = load_lambda_module("launch_hpo", "tuning_request")
final_training = load_lambda_module("select_best", "final_training")
from stepsage_lambda import settings  # noqa: E402
from stepsage_lambda.errors import ConfigurationError  # noqa: E402
from stepsage_lambda.payloads import StagedDataset  # noqa: E402

pytestmark = pytest.mark.unit

TEMPLATE = cfn_yaml.load(ROOT / "template.yaml")
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ENV = {
    "ARTIFACTS_BUCKET": "stepsage-artifacts-123456789012",
    "TRAINING_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6-gpu-py312",
    "AWS_REGION": "us-east-1",
}
CODE_URI = "s3://stepsage-artifacts-123456789012/code/sourcedir-0123456789abcdef.tar.gz"
# Settings the stack can give: the defaults, and every bound of the contract.
SETTINGS_CASES: list[dict[str, str]] = [
    {},
    {"LR_MIN": repr(contract.SPECS["lr"].minimum), "LR_MAX": repr(contract.SPECS["lr"].maximum)},
    {"IMAGE_SIZE": "16", "EPOCHS": "1", "WEIGHTS": "none", "EXTRA_HYPERPARAMETERS": "hflip=off patience=3"},
    {"IMAGE_SIZE": "512", "EPOCHS": "200", "EXTRA_HYPERPARAMETERS": "hflip=on, seed=7 optimizer=sgd"},
    *({"MODEL_ARCHITECTURE": name} for name in contract.SPECS["model"].choices),
]
# The template parameters that set a hyperparameter or the tuning, with the LaunchHpo variable each feeds.
TEMPLATE_VARIABLES = {
    "ImageSize": "IMAGE_SIZE",
    "Epochs": "EPOCHS",
    "ModelArchitecture": "MODEL_ARCHITECTURE",
    "PretrainedWeights": "WEIGHTS",
    "TuningStrategy": "TUNING_STRATEGY",
    "MaxTrainingJobs": "MAX_TRAINING_JOBS",
    "MaxParallelTrainingJobs": "MAX_PARALLEL_TRAINING_JOBS",
    "LearningRateMin": "LR_MIN",
    "LearningRateMax": "LR_MAX",
    "ExtraHyperParameters": "EXTRA_HYPERPARAMETERS",
}
# The variables whose value train.py gets as a hyperparameter of its own.
TRAIN_OPTIONS = {
    "IMAGE_SIZE": "image-size",
    "EPOCHS": "epochs",
    "MODEL_ARCHITECTURE": "model",
    "WEIGHTS": "weights",
}
EXTRA_EXAMPLES = (
    "",
    "hflip=off patience=3",
    "hflip=off, patience=3",
    " , seed=7,optimizer=sgd ",
    "hflip",
    "Hflip=off",
    "hflip=offpatience=3",
    "sagemaker_program=x.py",
    "sagemaker-program=x.py",
    "lr=",
    "lr=0.1",
    "augment=light",
    "epochs=3",
    "image-size=64",
)


@pytest.fixture(autouse=True)
def _no_failure_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_OUTPUT_DATA_DIR", raising=False)


# ---------------------------------------------------------------------------------------- the checkers


def train_refuses(hyperparameters: Mapping[str, str]) -> str | None:
    """train.py's parser on `--name value` pairs as SageMaker passes them; its error, or None."""
    argv = [token for name, value in hyperparameters.items() for token in (f"--{name}", str(value))]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            train.parse_args(argv)
    except SystemExit:
        return stderr.getvalue().strip().splitlines()[-1]
    return None


def tuning_request_for(env: Mapping[str, str]) -> dict[str, Any]:
    merged = {**ENV, **env}
    return tuning_request.build_tuning_request(
        execution_name="digits-1c0f6a2d9b3e",
        dataset=StagedDataset.model_validate(load_event("launch_hpo")["dataset"]),
        role_arn="arn:aws:iam::123456789012:role/sm",
        code_uri=CODE_URI,
        metric_definitions=[{"Name": "valid:accuracy", "Regex": "valid_accuracy=([0-9.]+)"}],
        objective={"Type": "Maximize", "MetricName": "valid:accuracy"},
        settings=settings.TrainingSettings.from_env(merged),
        tuning=tuning_request.TuningSettings.from_env(merged),
    )


def trials(request: Mapping[str, Any]) -> list[dict[str, str]]:
    """Hyperparameters of trials that together hold every range's ends and every categorical value."""
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    tuned: list[tuple[str, str]] = []
    for r in ranges.get("ContinuousParameterRanges", []) + ranges.get("IntegerParameterRanges", []):
        tuned += [(r["Name"], r["MinValue"]), (r["Name"], r["MaxValue"])]
    for r in ranges.get("CategoricalParameterRanges", []):
        tuned += [(r["Name"], value) for value in r["Values"]]
    # The container adds the objective to every trial; SelectBest drops it again.
    return [{**static, name: value, "_tuning_objective_metric": "valid:accuracy"} for name, value in tuned]


def unparsable(requests: list[dict[str, Any]]) -> list[str]:
    """Every hyperparameter set a tuning trial or the final job can get that train.py's parser refuses."""
    problems = []
    for request in requests:
        for trial in trials(request):
            sent = {k: v for k, v in trial.items() if k != "_tuning_objective_metric"}
            if error := train_refuses(sent):
                problems.append(f"trial {sent}: {error}")
            for mode in settings.DEBUGGER_MODES:
                final_settings = settings.TrainingSettings.from_env({**ENV, "DEBUGGER_MODE": mode})
                final = final_training.final_hyperparameters(trial, final_settings)
                if error := train_refuses(final):
                    problems.append(f"final job ({mode}) {final}: {error}")
    return problems


def contract_facts() -> dict[str, dict[str, Any]]:
    """What each template parameter must restate, from the contract."""
    spec = contract.SPECS
    lr = {"MinValue": spec["lr"].minimum, "MaxValue": spec["lr"].maximum}
    return {
        "ImageSize": {"AllowedPattern": contract.IMAGE_SIZE_PATTERN},
        "Epochs": {"MinValue": spec["epochs"].minimum, "MaxValue": spec["epochs"].maximum},
        "ModelArchitecture": {"AllowedValues": list(spec["model"].choices)},
        "PretrainedWeights": {"AllowedValues": list(spec["weights"].choices)},
        "TuningStrategy": {"AllowedValues": list(contract.TUNING_STRATEGIES)},
        "MaxTrainingJobs": dict(zip(("MinValue", "MaxValue"), contract.MAX_TRAINING_JOBS, strict=True)),
        "MaxParallelTrainingJobs": dict(
            zip(("MinValue", "MaxValue"), contract.MAX_PARALLEL_TRAINING_JOBS, strict=True)
        ),
        "LearningRateMin": lr,
        "LearningRateMax": lr,
        "ExtraHyperParameters": {"AllowedPattern": contract.EXTRA_HYPERPARAMETERS_PATTERN},
    }


def template_accepts(parameter: Mapping[str, Any], value: str) -> bool:
    """CloudFormation's check of a parameter value (AllowedPattern is a full-match Java regex)."""
    if "AllowedValues" in parameter and value not in [str(v) for v in parameter["AllowedValues"]]:
        return False
    if parameter["Type"] == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        if number < float(parameter.get("MinValue", -math.inf)) or number > float(
            parameter.get("MaxValue", math.inf)
        ):
            return False
    return "AllowedPattern" not in parameter or re.fullmatch(parameter["AllowedPattern"], value) is not None


def launch_hpo_refuses(variable: str, value: str) -> str | None:
    """LaunchHpo's settings given this one value; its error, or None."""
    env = {**ENV, variable: value}
    try:
        if variable in ("LR_MIN", "LR_MAX"):
            # Each end alone: min < max spans two parameters, which a template cannot state (tested below).
            settings.hyperparameter(env, variable, contract.LEARNING_RATE, value)
        else:
            settings.TrainingSettings.from_env(env)
            tuning_request.TuningSettings.from_env(env)
    except ConfigurationError as e:
        return str(e)
    return None


def _probes(parameter: Mapping[str, Any], facts: Mapping[str, Any]) -> list[str]:
    """Boundary values from both sides: each bound, one step outside it, every choice and a stranger."""
    values: list[str] = ["bogus"]
    integral = parameter["Type"] == "Number" and all(
        float(x).is_integer() for x in (parameter.get("MinValue", 0), parameter.get("MaxValue", 0))
    )
    for source in (parameter, facts):
        values += [str(v) for v in source.get("AllowedValues", [])]
        for key, outward in (("MinValue", -1), ("MaxValue", 1)):
            if key in source:
                bound = source[key]
                if integral:
                    values += [str(int(bound)), str(int(bound) + outward)]
                else:
                    values += [repr(float(bound)), repr(float(bound) * 10.0**outward)]
    if "AllowedPattern" in parameter or "AllowedPattern" in facts:
        spec = contract.SPECS[contract.IMAGE_SIZE]
        low, high = int(spec.minimum or 0), int(spec.maximum or 0)
        values += [
            contract.AUTO,
            "0",
            "10",
            "99",
            "100",
            "999",
            "1000",
            *map(str, (low - 1, low, high, high + 1)),
        ]
    return list(dict.fromkeys(values))


def template_drift(
    parameters: Mapping[str, Any], refuses: Callable[[str, str], str | None] = launch_hpo_refuses
) -> list[str]:
    """Every way the template's hyperparameter parameters differ from the contract and the code: a stated
    bound that is not the contract's, or a probe value the template and the code judge differently."""
    problems = []
    for name, facts in contract_facts().items():
        parameter = parameters.get(name)
        if parameter is None:
            problems.append(f"{name}: missing from the template")
            continue
        for key, wanted in facts.items():
            if parameter.get(key) != wanted:
                problems.append(f"{name}: {key} is {parameter.get(key)!r}, the contract says {wanted!r}")
        variable = TEMPLATE_VARIABLES[name]
        probes = list(EXTRA_EXAMPLES) if name == "ExtraHyperParameters" else _probes(parameter, facts)
        for value in probes:
            template_ok, error = template_accepts(parameter, value), refuses(variable, value)
            if template_ok and error:
                problems.append(f"{name}={value!r}: the template accepts it, LaunchHpo refuses ({error})")
            if not template_ok and not error:
                problems.append(f"{name}={value!r}: LaunchHpo accepts it, the template refuses")
            option = TRAIN_OPTIONS.get(variable)
            if option and (error is None) != (train_refuses({option: value}) is None):
                problems.append(f"{name}={value!r}: LaunchHpo and train.py's --{option} disagree")
    return problems


# ------------------------------------------------------------------------ (a) what is sent, train.py takes


@pytest.mark.parametrize("strategy", contract.TUNING_STRATEGIES)
@pytest.mark.parametrize("env", SETTINGS_CASES, ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()))
def test_every_hyperparameter_a_trial_or_the_final_job_gets_parses_in_train_py(
    strategy: str, env: dict[str, str]
) -> None:
    request = tuning_request_for({**env, "TUNING_STRATEGY": strategy})
    assert unparsable([request]) == []


def test_the_template_examples_of_extra_hyperparameters_parse_in_train_py() -> None:
    for text in (PARAMETERS["ExtraHyperParameters"]["Default"], "hflip=off patience=3"):
        assert train_refuses(contract.parse_extra(text)) is None, text


def test_the_search_space_lies_inside_the_bounds() -> None:
    for r in contract.CONTINUOUS_RANGES:
        spec = contract.SPECS[r.name]
        assert spec.parse(repr(r.minimum)) == r.minimum and spec.parse(repr(r.maximum)) == r.maximum
    for name, values in [*contract.CATEGORICAL_RANGES.items(), *contract.GRID_RANGES.items()]:
        assert [str(contract.SPECS[name].parse(v)) for v in values] == list(values), name
    low, high = contract.DEFAULT_LR_RANGE
    for value in contract.grid_learning_rates(low, high):
        assert low <= float(value) <= high


# --------------------------------------------------------------------- (b) the template and the contract


def test_template_parameters_match_the_contract_and_the_code() -> None:
    assert template_drift(PARAMETERS) == []


def test_image_size_pattern_is_exactly_the_bounds() -> None:
    spec = contract.SPECS[contract.IMAGE_SIZE]
    assert spec.minimum is not None and spec.maximum is not None
    for number in range(0, 2000):
        in_bounds = spec.minimum <= number <= spec.maximum
        assert bool(re.fullmatch(contract.IMAGE_SIZE_PATTERN, str(number))) == in_bounds, number
    assert re.fullmatch(contract.IMAGE_SIZE_PATTERN, contract.AUTO)


def test_launch_hpo_and_select_best_get_the_hyperparameters_from_the_same_parameters() -> None:
    launch = RESOURCES["LaunchHpoFunction"]["Properties"]["Environment"]["Variables"]
    select = RESOURCES["SelectBestFunction"]["Properties"]["Environment"]["Variables"]
    for parameter, variable in TEMPLATE_VARIABLES.items():
        assert launch[variable] == {"Ref": parameter}, variable
    # SelectBest reads TrainingSettings too: every variable of it that LaunchHpo gets, it gets alike.
    for variable in ("IMAGE_SIZE", "EPOCHS", "MODEL_ARCHITECTURE", "WEIGHTS", "EXTRA_HYPERPARAMETERS"):
        assert select.get(variable) == launch[variable], variable


def test_learning_rate_range_must_be_ordered() -> None:
    with pytest.raises(ConfigurationError, match=r"LR_MIN=0\.01 must be below LR_MAX=0\.001"):
        tuning_request_for({"LR_MIN": "0.01", "LR_MAX": "0.001"})
    with pytest.raises(ConfigurationError, match="LR_MIN"):
        tuning_request_for({"LR_MIN": "0.001", "LR_MAX": "0.001"})
    with pytest.raises(ConfigurationError, match="LR_MAX"):
        tuning_request_for({"LR_MAX": "2"})
    lr = tuning_request_for({"LR_MIN": "1e-05", "LR_MAX": "0.1"})["HyperParameterTuningJobConfig"]
    first = lr["ParameterRanges"]["ContinuousParameterRanges"][0]
    assert (first["Name"], first["MinValue"], first["MaxValue"]) == ("lr", "1e-05", "0.1")


def test_training_code_covers_exactly_the_contracts_names() -> None:
    assert tuple(architectures.ARCHITECTURES) == contract.ARCHITECTURES
    assert architectures.WEIGHTS_CHOICES == contract.WEIGHTS_CHOICES
    assert presets.AUGMENTATIONS == contract.AUGMENTATIONS


# --------------------------------------------------------------------------------- (c) drift is caught


def test_the_old_image_size_pattern_is_reported() -> None:
    drifted = copy.deepcopy(PARAMETERS)
    drifted["ImageSize"]["AllowedPattern"] = "^(auto|[1-9][0-9]{1,2})$"  # before this contract
    problems = template_drift(drifted)
    assert any(p.startswith("ImageSize: AllowedPattern is") for p in problems)
    # 10 passed CloudFormation and then failed LaunchHpo at run time.
    assert any(p.startswith("ImageSize='10': the template accepts it, LaunchHpo refuses") for p in problems)
    assert any(p.startswith("ImageSize='999': the template accepts it") for p in problems)


def test_a_contract_bound_that_moves_alone_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    epochs = contract.SPECS[contract.EPOCHS]
    monkeypatch.setitem(contract.SPECS, contract.EPOCHS, replace(epochs, maximum=100))
    problems = template_drift(PARAMETERS)
    assert "Epochs: MaxValue is 200, the contract says 100" in problems
    assert any(p.startswith("Epochs='200': the template accepts it, LaunchHpo refuses") for p in problems)


def test_a_template_choice_the_code_lacks_is_reported() -> None:
    drifted = copy.deepcopy(PARAMETERS)
    drifted["ModelArchitecture"]["AllowedValues"].append("vit_b_16")
    problems = template_drift(drifted)
    assert any(p.startswith("ModelArchitecture: AllowedValues is") for p in problems)
    assert any(p.startswith("ModelArchitecture='vit_b_16': the template accepts it") for p in problems)


def test_a_search_value_train_py_refuses_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    grown = {**contract.CATEGORICAL_RANGES, contract.BATCH_SIZE: ("32", "64", "4096")}
    monkeypatch.setattr(contract, "CATEGORICAL_RANGES", grown)
    problems = unparsable([tuning_request_for({})])
    assert problems and all("'batch-size': '4096'" in p for p in problems)
    assert all("must be > 0 and <= 1024" in p for p in problems)
