"""Request validation against the SageMaker service model and AWS's cross-field rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stepsage.local.errors import SageMakerError
from stepsage.local.sagemaker.validation import java_pattern_to_python, validate_request

pytestmark = pytest.mark.unit

ROLE = "arn:aws:iam::123456789012:role/stepsage"
METRICS = [{"Name": "valid:accuracy", "Regex": r"valid_accuracy=([0-9.]+)"}]


def training_job(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TrainingJobName": "stepsage-abc123-final-0",
        "AlgorithmSpecification": {
            "TrainingImage": "img:latest",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "HyperParameters": {"sagemaker_program": "train.py", "epochs": "3"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/data/train"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CheckpointConfig": {"S3Uri": "s3://bucket/checkpoints"},
        "DebugHookConfig": {
            "S3OutputPath": "s3://bucket/debug",
            "CollectionConfigurations": [
                {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "10"}}
            ],
        },
        "DebugRuleConfigurations": [
            {
                "RuleConfigurationName": "VanishingGradient",
                "RuleEvaluatorImage": "rules:1",
                "RuleParameters": {"rule_to_invoke": "VanishingGradient"},
            }
        ],
        "Tags": [{"Key": "stack", "Value": "stepsage"}],
    }
    request.update(overrides)
    return request


def tuning_job(strategy: str = "Bayesian", **config: Any) -> dict[str, Any]:
    job = training_job()
    ranges: dict[str, Any] = {
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
        ],
        "IntegerParameterRanges": [{"Name": "batch-size", "MinValue": "16", "MaxValue": "64"}],
        "CategoricalParameterRanges": [{"Name": "model", "Values": ["resnet18", "mobilenet_v3_large"]}],
    }
    return {
        "HyperParameterTuningJobName": "stepsage-abc123-hpo",
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "valid:accuracy"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": "Auto",
            **config,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"epochs": "3"},
            "AlgorithmSpecification": job["AlgorithmSpecification"],
            "RoleArn": ROLE,
            "InputDataConfig": job["InputDataConfig"],
            "OutputDataConfig": job["OutputDataConfig"],
            "ResourceConfig": job["ResourceConfig"],
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
            "EnableManagedSpotTraining": True,
        },
    }


def rejected(operation: str, request: dict[str, Any]) -> str:
    with pytest.raises(SageMakerError) as error:
        validate_request(operation, request)
    assert error.value.code == "ValidationException" and error.value.status_code == 400
    return error.value.message


def test_valid_full_requests_pass() -> None:
    validate_request("CreateTrainingJob", training_job())
    validate_request("CreateHyperParameterTuningJob", tuning_job())
    hyperband = tuning_job(
        "Hyperband",
        TrainingJobEarlyStoppingType="Off",
        StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 9}},
    )
    validate_request("CreateHyperParameterTuningJob", hyperband)
    grid = tuning_job("Grid", ResourceLimits={"MaxParallelTrainingJobs": 2})
    grid["HyperParameterTuningJobConfig"]["ParameterRanges"] = {
        "CategoricalParameterRanges": [
            {"Name": "model", "Values": ["a", "b"]},
            {"Name": "lr", "Values": ["1", "2"]},
        ]
    }
    validate_request("CreateHyperParameterTuningJob", grid)
    validate_request(
        "CreateModel",
        {
            "ModelName": "m-1",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {
                "Image": "img",
                "ModelDataUrl": "s3://bucket/model.tar.gz",
                "Environment": {"SAGEMAKER_PROGRAM": "x.py"},
            },
        },
    )
    validate_request(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c-1",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "m-1",
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                }
            ],
        },
    )
    validate_request("DescribeEndpoint", {"EndpointName": "stepsage-digits"})


def test_hundred_character_job_name_is_rejected_with_aws_wording() -> None:
    message = rejected("CreateTrainingJob", training_job(TrainingJobName="a" * 100))
    assert message.startswith("2 validation errors detected: Value '" + "a" * 100 + "' at 'trainingJobName'")
    assert "Member must have length less than or equal to 63" in message


def test_tuning_job_name_over_32_characters_is_rejected() -> None:
    request = tuning_job()
    request["HyperParameterTuningJobName"] = "a" * 33
    assert "Member must have length less than or equal to 32" in rejected(
        "CreateHyperParameterTuningJob", request
    )


def test_bad_strategy_and_enum_are_rejected() -> None:
    message = rejected("CreateHyperParameterTuningJob", tuning_job("NotAStrategy"))
    assert (
        "Value 'NotAStrategy' at 'hyperParameterTuningJobConfig.strategy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Bayesian, Random, Hyperband, Grid]"
    ) in message
    request = training_job()
    request["AlgorithmSpecification"]["TrainingInputMode"] = "Streaming"
    assert "'algorithmSpecification.trainingInputMode'" in rejected("CreateTrainingJob", request)


def test_malformed_s3_uri_is_rejected() -> None:
    request = training_job()
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "bucket/data/train"
    message = rejected("CreateTrainingJob", request)
    assert "at 'inputDataConfig.1.member.dataSource.s3DataSource.s3Uri'" in message
    assert "Member must satisfy regular expression pattern: (https|s3)://([^/]+)/?(.*)" in message


def test_nested_structure_errors_are_reported_with_their_path() -> None:
    request = training_job()
    del request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataType"]
    request["Tags"] = [{"Value": "no key"}]
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 0
    request["HyperParameters"]["k" * 300] = "v"
    message = rejected("CreateTrainingJob", training_job(**{k: request[k] for k in request}))
    assert (
        "Value null at 'inputDataConfig.1.member.dataSource.s3DataSource.s3DataType' "
        "failed to satisfy constraint: Member must not be null"
    ) in message
    assert "Value null at 'tags.1.member.key'" in message
    assert (
        "at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: Member must have value"
        in message
    )
    assert "Map keys must satisfy constraint: Member must have length less than or equal to 256" in message
    assert "Unknown parameter 'Bogus'" in rejected("CreateTrainingJob", training_job(Bogus=1))
    assert "Member must be an integer" in rejected(
        "CreateTrainingJob", training_job(StoppingCondition={"MaxRuntimeInSeconds": "60"})
    )


def test_cross_field_rules() -> None:
    hyperband_auto = tuning_job("Hyperband", StrategyConfig={"HyperbandStrategyConfig": {"MaxResource": 9}})
    assert "TrainingJobEarlyStoppingType must be Off" in rejected(
        "CreateHyperParameterTuningJob", hyperband_auto
    )

    config_without_hyperband = tuning_job(StrategyConfig={"HyperbandStrategyConfig": {"MaxResource": 9}})
    assert "only when the Strategy is Hyperband" in rejected(
        "CreateHyperParameterTuningJob", config_without_hyperband
    )

    spot = copy.deepcopy(tuning_job())
    spot["TrainingJobDefinition"]["StoppingCondition"]["MaxWaitTimeInSeconds"] = 60
    assert "must be greater than or equal to" in rejected("CreateHyperParameterTuningJob", spot)
    no_wait = training_job(EnableManagedSpotTraining=True)
    assert "MaxWaitTimeInSeconds is required" in rejected("CreateTrainingJob", no_wait)

    grid = tuning_job("Grid")
    assert "supports only categorical" in rejected("CreateHyperParameterTuningJob", grid)
    grid["HyperParameterTuningJobConfig"]["ParameterRanges"] = {
        "CategoricalParameterRanges": [{"Name": "model", "Values": ["a", "b", "c"]}]
    }
    assert "must equal the number of distinct" in rejected("CreateHyperParameterTuningJob", grid)

    objective = tuning_job()
    objective["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = (
        "test:accuracy"
    )
    assert "Provide a metric in the metric definitions" in rejected(
        "CreateHyperParameterTuningJob", objective
    )

    inverted = tuning_job()
    inverted["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"][0]["MinValue"] = (
        "128"
    )
    assert "must be less than or equal to MaxValue" in rejected("CreateHyperParameterTuningJob", inverted)

    static_and_tuned = tuning_job()
    static_and_tuned["TrainingJobDefinition"]["StaticHyperParameters"]["lr"] = "0.1"
    assert "both static and tuned: lr" in rejected("CreateHyperParameterTuningJob", static_and_tuned)


def test_java_patterns_translate() -> None:
    assert java_pattern_to_python(r"arn:[\p{Alnum}\-]+:lambda") == r"arn:[a-zA-Z0-9\-]+:lambda"
    validate_request("ListTags", {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x"})
    assert "Member must satisfy regular expression pattern" in rejected(
        "AddTags",
        {
            "ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x",
            "Tags": [{"Key": "bad\u0000key", "Value": "v"}],
        },
    )
