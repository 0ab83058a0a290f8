"""Validate SageMaker requests against botocore's service model and AWS's documented cross-field rules."""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from typing import Any

import botocore.session
import regex
from botocore.model import (
    ListShape,
    MapShape,
    OperationModel,
    OperationNotFoundError,
    ServiceModel,
    Shape,
    StructureShape,
)

from stepsage.local.errors import SageMakerError
from stepsage.local.sagemaker.exceptions import ValidationError

# Hyperband infers MaxResource from the first of these static hyperparameters (AWS HyperbandStrategyConfig).
HYPERBAND_EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
MAX_TUNED_HYPERPARAMETERS = 30

_NUMERIC_TYPES = {"integer", "long", "float", "double"}


@functools.cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Raise ValidationException (AWS's wording) when AWS would reject `params` for `operation`."""
    try:
        operation_model: OperationModel = service_model().operation_model(operation)
    except OperationNotFoundError as e:
        raise SageMakerError("UnknownOperationException", f"Unknown operation {operation}", 400) from e
    errors: list[str] = []
    if operation_model.input_shape is not None:
        _check(operation_model.input_shape, params, "", errors)
    if not errors:
        # Cross-field rules assume well-typed input, so they run only on requests that passed the model.
        rule = _CROSS_FIELD_RULES.get(operation)
        if rule is not None:
            rule(params, errors)
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise ValidationError(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))


def java_pattern_to_python(pattern: str) -> str:
    """Rewrite the Java-only parts of the model's regexes into the `regex` module's dialect."""
    # Java writes supplementary characters as UTF-16 surrogate pairs inside a class.
    pattern = pattern.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    # Java's \p{Alnum} is ASCII-only (POSIX); regex's \p{Alnum} is Unicode.
    pattern = pattern.replace(r"\p{Alnum}", "a-zA-Z0-9") if "[" in pattern else pattern
    return pattern.replace(r"\p{Alnum}", "[a-zA-Z0-9]")


@functools.cache
def compiled_pattern(pattern: str) -> regex.Pattern[str]:
    return regex.compile(java_pattern_to_python(pattern))


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return str(value)


def _constraint(errors: list[str], value: Any, path: str, constraint: str) -> None:
    rendered = "null" if value is None else f"'{_render(value)}'"
    errors.append(f"Value {rendered} at '{path}' failed to satisfy constraint: {constraint}")


def _join(path: str, member: str) -> str:
    return f"{path}.{_camel(member)}" if path else _camel(member)


def _check(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        _check_structure(shape, value, path, errors)  # type: ignore[arg-type]
    elif kind == "list":
        _check_list(shape, value, path, errors)  # type: ignore[arg-type]
    elif kind == "map":
        _check_map(shape, value, path, errors)  # type: ignore[arg-type]
    elif kind == "string":
        _check_string(shape, value, path, errors)
    elif kind in _NUMERIC_TYPES:
        _check_number(shape, value, path, errors)
    elif kind == "boolean":
        if not isinstance(value, bool):
            _constraint(errors, value, path, "Member must be a boolean")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, dt.datetime | int | float | str):
            _constraint(errors, value, path, "Member must be a timestamp")
    elif kind == "blob" and not isinstance(value, bytes | bytearray | str):
        _constraint(errors, value, path, "Member must be a blob")


def _check_structure(shape: StructureShape, value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        _constraint(errors, value, path, "Member must be a structure")
        return
    for name in shape.required_members:
        if value.get(name) is None:
            _constraint(errors, None, _join(path, name), "Member must not be null")
    for name, member_value in value.items():
        if name not in shape.members:
            errors.append(f"Unknown parameter '{name}' at '{path or 'request'}'")
            continue
        if member_value is not None:
            _check(shape.members[name], member_value, _join(path, name), errors)


def _check_length(shape: Shape, value: Any, path: str, errors: list[str], noun: str = "length") -> None:
    size = len(value)
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        _constraint(errors, value, path, f"Member must have {noun} greater than or equal to {low}")
    if high is not None and size > high:
        _constraint(errors, value, path, f"Member must have {noun} less than or equal to {high}")


def _check_list(shape: ListShape, value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, list | tuple):
        _constraint(errors, value, path, "Member must be a list")
        return
    _check_length(shape, value, path, errors)
    for index, item in enumerate(value, start=1):
        item_path = f"{path}.{index}.member"
        if item is None:
            _constraint(errors, None, item_path, "Member must not be null")
        else:
            _check(shape.member, item, item_path, errors)


def _check_map(shape: MapShape, value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        _constraint(errors, value, path, "Member must be a map")
        return
    _check_length(shape, value, path, errors)
    for key, item in value.items():
        key_errors: list[str] = []
        _check(shape.key, key, path, key_errors)
        prefix = "failed to satisfy constraint: "
        errors.extend(e.replace(prefix, prefix + "Map keys must satisfy constraint: ") for e in key_errors)
        value_errors: list[str] = []
        if item is None:
            _constraint(value_errors, None, f"{path}.{key}", "Member must not be null")
        else:
            _check(shape.value, item, f"{path}.{key}", value_errors)
        errors.extend(value_errors)


def _check_string(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, str):
        _constraint(errors, value, path, "Member must be a string")
        return
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        _constraint(errors, value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        return
    _check_length(shape, value, path, errors)
    pattern = shape.metadata.get("pattern")
    if pattern and compiled_pattern(pattern).fullmatch(value) is None:
        _constraint(errors, value, path, f"Member must satisfy regular expression pattern: {pattern}")


def _check_number(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    integral = shape.type_name in ("integer", "long")
    valid_type = int if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, valid_type):
        _constraint(errors, value, path, f"Member must be {'an integer' if integral else 'a number'}")
        return
    if isinstance(value, float) and not math.isfinite(value):
        _constraint(errors, value, path, "Member must be a finite number")
        return
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        _constraint(errors, value, path, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        _constraint(errors, value, path, f"Member must have value less than or equal to {high}")


# ---- cross-field rules, from the SageMaker API reference and developer guide ----


def _check_algorithm(algorithm: dict[str, Any], path: str, errors: list[str]) -> None:
    has_image, has_name = bool(algorithm.get("TrainingImage")), bool(algorithm.get("AlgorithmName"))
    if has_image == has_name:
        errors.append(f"{path}: you must specify either an algorithm name or a training image, but not both.")
    if has_name and algorithm.get("MetricDefinitions"):
        errors.append(
            f"{path}: MetricDefinitions can only be specified with a TrainingImage (custom algorithm)."
        )
    names = [m["Name"] for m in algorithm.get("MetricDefinitions") or []]
    if len(names) != len(set(names)):
        errors.append(f"{path}.MetricDefinitions: metric names must be unique.")
    for metric in algorithm.get("MetricDefinitions") or []:
        try:
            compiled_pattern(metric["Regex"])
        except regex.error as e:
            errors.append(f"Invalid regular expression for metric {metric['Name']}: {e}")


def _check_stopping(params: dict[str, Any], path: str, errors: list[str]) -> None:
    stopping = params.get("StoppingCondition") or {}
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    max_runtime = stopping.get("MaxRuntimeInSeconds", 86400)
    if params.get("EnableManagedSpotTraining"):
        if max_wait is None:
            errors.append(f"{path}: MaxWaitTimeInSeconds is required when EnableManagedSpotTraining is true.")
        elif max_wait < max_runtime:
            errors.append(
                f"{path}: Invalid MaxWaitTimeInSeconds. It must be greater than or equal to "
                "MaxRuntimeInSeconds "
                f"({max_wait} < {max_runtime})."
            )
    elif max_wait is not None:
        errors.append(
            f"{path}: Invalid MaxWaitTimeInSeconds. It is only supported when "
            "EnableManagedSpotTraining is set to true."
        )


def _check_channels(channels: list[dict[str, Any]], path: str, errors: list[str]) -> None:
    names = [c["ChannelName"] for c in channels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        errors.append(f"{path}: channel names must be unique; duplicated: {', '.join(duplicates)}.")


def _check_training_job(params: dict[str, Any], errors: list[str]) -> None:
    _check_algorithm(params["AlgorithmSpecification"], "AlgorithmSpecification", errors)
    _check_stopping(params, "CreateTrainingJob", errors)
    _check_channels(params.get("InputDataConfig") or [], "InputDataConfig", errors)
    rules = [r["RuleConfigurationName"] for r in params.get("DebugRuleConfigurations") or []]
    if len(rules) != len(set(rules)):
        errors.append("DebugRuleConfigurations: RuleConfigurationName values must be unique.")
    resources = params.get("ResourceConfig") or {}
    if not resources.get("InstanceGroups") and not (
        resources.get("InstanceType") and resources.get("InstanceCount")
    ):
        errors.append(
            "ResourceConfig: InstanceType and InstanceCount are required when InstanceGroups is not given."
        )


def _parse_number(text: str, path: str, errors: list[str]) -> float | None:
    try:
        number = float(text)
    except ValueError:
        errors.append(f"{path}: '{text}' is not a number.")
        return None
    if not math.isfinite(number):
        errors.append(f"{path}: '{text}' is not a finite number.")
        return None
    return number


def _check_numeric_range(item: dict[str, Any], kind: str, path: str, errors: list[str]) -> None:
    low = _parse_number(item["MinValue"], f"{path}.MinValue", errors)
    high = _parse_number(item["MaxValue"], f"{path}.MaxValue", errors)
    if low is None or high is None:
        return
    if kind == "Integer" and (not low.is_integer() or not high.is_integer()):
        errors.append(f"{path}: MinValue and MaxValue of an integer range must be integers.")
    if low > high:
        errors.append(
            f"{path}: MinValue ({item['MinValue']}) must be less than or equal to "
            f"MaxValue ({item['MaxValue']})."
        )
    scaling = item.get("ScalingType", "Auto")
    if scaling == "Logarithmic" and low <= 0:
        errors.append(f"{path}: Logarithmic scaling requires MinValue greater than 0.")
    if scaling == "ReverseLogarithmic":
        if kind == "Integer":
            errors.append(
                f"{path}: ReverseLogarithmic scaling is only supported for continuous hyperparameters."
            )
        elif not (low >= 0 and high < 1):
            errors.append(f"{path}: ReverseLogarithmic scaling requires 0 <= MinValue <= MaxValue < 1.")


def grid_size(ranges: dict[str, Any]) -> int:
    """How many training jobs a Grid search over categorical `ranges` launches."""
    size = 1
    for item in ranges.get("CategoricalParameterRanges") or []:
        size *= len(set(item["Values"]))
    return size


def _check_training_definition(
    definition: dict[str, Any], config: dict[str, Any], path: str, errors: list[str]
) -> None:
    _check_algorithm(definition["AlgorithmSpecification"], f"{path}.AlgorithmSpecification", errors)
    _check_stopping(definition, path, errors)
    _check_channels(definition.get("InputDataConfig") or [], f"{path}.InputDataConfig", errors)
    ranges = definition.get("HyperParameterRanges") or config.get("ParameterRanges") or {}
    static = definition.get("StaticHyperParameters") or {}
    overlap = sorted(set(static) & set(_range_names(ranges)))
    if overlap:
        errors.append(f"{path}: hyperparameters cannot be both static and tuned: {', '.join(overlap)}.")
    objective = definition.get("TuningObjective") or config.get("HyperParameterTuningJobObjective")
    if objective is None:
        errors.append("A hyperparameter tuning job objective is required (HyperParameterTuningJobObjective).")
        return
    algorithm = definition["AlgorithmSpecification"]
    if algorithm.get("TrainingImage"):
        metric_names = {m["Name"] for m in algorithm.get("MetricDefinitions") or []}
        if objective["MetricName"] not in metric_names:
            errors.append(
                "A metric is required for this hyperparameter tuning job objective. "
                "Provide a metric in the metric definitions."
            )
    if config.get("Strategy") == "Hyperband":
        hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
        if "MaxResource" not in hyperband and not any(k in static for k in HYPERBAND_EPOCH_KEYS):
            errors.append(
                "HyperbandStrategyConfig: MaxResource is not set and cannot be inferred from the static "
                f"hyperparameters ({', '.join(HYPERBAND_EPOCH_KEYS)})."
            )


def _range_names(ranges: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for key in ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges"):
        names.extend(item["Name"] for item in ranges.get(key) or [])
    return names


def _check_parameter_ranges(
    ranges: dict[str, Any], strategy: str, limits: dict[str, Any], errors: list[str]
) -> None:
    path = "HyperParameterTuningJobConfig.ParameterRanges"
    names = _range_names(ranges)
    if len(names) > MAX_TUNED_HYPERPARAMETERS:
        errors.append(
            f"{path}: at most {MAX_TUNED_HYPERPARAMETERS} hyperparameters can be tuned; got {len(names)}."
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        errors.append(f"{path}: each hyperparameter can appear in only one range: {', '.join(duplicates)}.")
    for kind in ("Integer", "Continuous"):
        for index, item in enumerate(ranges.get(f"{kind}ParameterRanges") or [], start=1):
            _check_numeric_range(item, kind, f"{path}.{kind}ParameterRanges.{index}", errors)
    if strategy == "Grid":
        if ranges.get("IntegerParameterRanges") or ranges.get("ContinuousParameterRanges"):
            errors.append("Grid search strategy supports only categorical hyperparameter ranges.")
        elif not ranges.get("CategoricalParameterRanges"):
            errors.append("Grid search strategy requires at least one categorical hyperparameter range.")
        else:
            size = grid_size(ranges)
            requested = limits.get("MaxNumberOfTrainingJobs")
            if requested is not None and requested != size:
                errors.append(
                    f"For the Grid strategy, MaxNumberOfTrainingJobs ({requested}) must equal the number of "
                    f"distinct hyperparameter combinations ({size}), or be omitted."
                )
    elif limits.get("MaxNumberOfTrainingJobs") is None:
        errors.append(f"ResourceLimits.MaxNumberOfTrainingJobs is required for the {strategy} strategy.")


def _check_tuning_job(params: dict[str, Any], errors: list[str]) -> None:
    config = params["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    limits = config["ResourceLimits"]
    if ("TrainingJobDefinition" in params) == ("TrainingJobDefinitions" in params):
        errors.append("Specify exactly one of TrainingJobDefinition and TrainingJobDefinitions.")
        return
    strategy_config = config.get("StrategyConfig") or {}
    if strategy == "Hyperband":
        if config.get("TrainingJobEarlyStoppingType", "Off") != "Off":
            errors.append(
                "TrainingJobEarlyStoppingType must be Off to use the Hyperband strategy, "
                "which has its own internal early stopping."
            )
        hyperband = strategy_config.get("HyperbandStrategyConfig") or {}
        low, high = hyperband.get("MinResource"), hyperband.get("MaxResource")
        if low is not None and high is not None and low > high:
            errors.append(
                f"HyperbandStrategyConfig: MinResource ({low}) must not exceed MaxResource ({high})."
            )
    elif "HyperbandStrategyConfig" in strategy_config:
        errors.append("HyperbandStrategyConfig can be provided only when the Strategy is Hyperband.")
    max_jobs, max_parallel = limits.get("MaxNumberOfTrainingJobs"), limits["MaxParallelTrainingJobs"]
    if max_jobs is not None and max_parallel > max_jobs:
        errors.append(
            f"ResourceLimits: MaxParallelTrainingJobs ({max_parallel}) must not exceed "
            f"MaxNumberOfTrainingJobs ({max_jobs})."
        )
    definitions = params.get("TrainingJobDefinitions") or [params["TrainingJobDefinition"]]
    for index, definition in enumerate(definitions, start=1):
        ranges = definition.get("HyperParameterRanges") or config.get("ParameterRanges") or {}
        _check_parameter_ranges(ranges, strategy, limits, errors)
        _check_training_definition(definition, config, f"TrainingJobDefinition[{index}]", errors)


def _check_endpoint_config(params: dict[str, Any], errors: list[str]) -> None:
    variants = params["ProductionVariants"]
    names = [v["VariantName"] for v in variants]
    if len(names) != len(set(names)):
        errors.append("ProductionVariants: VariantName values must be unique.")
    for variant in variants:
        serverless = variant.get("ServerlessConfig") is not None
        instances = (
            variant.get("InstanceType") is not None and variant.get("InitialInstanceCount") is not None
        )
        if serverless == instances:
            errors.append(
                f"ProductionVariant {variant['VariantName']}: specify either InstanceType with "
                "InitialInstanceCount, or ServerlessConfig."
            )


def _check_model(params: dict[str, Any], errors: list[str]) -> None:
    if ("PrimaryContainer" in params) == bool(params.get("Containers")):
        errors.append("Specify exactly one of PrimaryContainer and Containers.")


_CROSS_FIELD_RULES: dict[str, Callable[[dict[str, Any], list[str]], None]] = {
    "CreateTrainingJob": _check_training_job,
    "CreateHyperParameterTuningJob": _check_tuning_job,
    "CreateEndpointConfig": _check_endpoint_config,
    "CreateModel": _check_model,
}
