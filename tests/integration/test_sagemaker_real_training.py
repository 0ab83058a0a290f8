"""One training job that runs the real training_code/train.py in the emulator, hook and rule job included."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import conftest_sagemaker
import pytest
from conftest_sagemaker import (
    BUCKET,
    ROLE_ARN,
    s3_client,
    wait_training,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Fixtures shared through the helper module.
s3_endpoint = conftest_sagemaker.s3_endpoint
backend = conftest_sagemaker.backend

REPO = Path(__file__).resolve().parents[2]
IMAGES_PER_CLASS = {"train": 6, "valid": 2, "test": 2}


def _sourcedir() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for folder, prefix in ((REPO / "training_code", ""), (REPO / "inference_code", "inference_code/")):
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    tar.add(path, arcname=prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


@pytest.mark.skipif(
    not (REPO / "training_code" / "train.py").exists(), reason="training_code/train.py not written"
)
def test_real_train_py_completes_with_metrics_artifact_and_rules(
    backend: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    import sys

    sys.path.insert(0, str(REPO / "training_code"))
    from metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC
    from stepsage.sample import build_sample_dataset

    build_sample_dataset(tmp_path / "digits", size=16)
    s3 = s3_client(s3_endpoint)
    for split, count in IMAGES_PER_CLASS.items():
        for class_dir in sorted((tmp_path / "digits" / split).iterdir())[:3]:
            for image in sorted(class_dir.iterdir())[:count]:
                s3.put_object(
                    Bucket=BUCKET,
                    Key=f"real/data/{split}/{class_dir.name}/{image.name}",
                    Body=image.read_bytes(),
                )
    s3.put_object(Bucket=BUCKET, Key="real/code/sourcedir.tar.gz", Body=_sourcedir())
    request = {
        "TrainingJobName": "real-train",
        "AlgorithmSpecification": {
            "TrainingImage": "pytorch-training:local",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": ROLE_ARN,
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": f"s3://{BUCKET}/real/code/sourcedir.tar.gz",
            "model": "resnet18",
            "weights": "none",
            "epochs": "2",
            "batch-size": "8",
            "image-size": "32",
            "debug-hook": "on",
            "hook-save-interval": "1",
        },
        "InputDataConfig": [
            {
                "ChannelName": split,
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/real/data/{split}"}
                },
            }
            for split in IMAGES_PER_CLASS
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/real/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "DebugHookConfig": {"S3OutputPath": f"s3://{BUCKET}/real/debug"},
        "DebugRuleConfigurations": [
            {
                "RuleConfigurationName": "VanishingGradient",
                "RuleEvaluatorImage": "rules:local",
                "RuleParameters": {"rule_to_invoke": "VanishingGradient"},
            },
            {
                "RuleConfigurationName": "LossNotDecreasing",
                "RuleEvaluatorImage": "rules:local",
                "RuleParameters": {"rule_to_invoke": "LossNotDecreasing"},
            },
        ],
    }
    backend.handle("CreateTrainingJob", request)
    described = wait_training(backend, "real-train", timeout=600)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    finals = {m["MetricName"] for m in described["FinalMetricDataList"]}
    assert OBJECTIVE_METRIC in finals

    def rules_done() -> list[dict[str, Any]] | None:
        statuses = backend.handle("DescribeTrainingJob", {"TrainingJobName": "real-train"})[
            "DebugRuleEvaluationStatuses"
        ]
        return statuses if all(s["RuleEvaluationStatus"] != "InProgress" for s in statuses) else None

    from conftest_sagemaker import wait_for

    statuses = wait_for(rules_done, timeout=300)
    assert {s["RuleConfigurationName"] for s in statuses} == {"VanishingGradient", "LossNotDecreasing"}
    assert all(s["RuleEvaluationStatus"] in ("NoIssuesFound", "IssuesFound") for s in statuses), statuses
    key = described["ModelArtifacts"]["S3ModelArtifacts"].split(f"{BUCKET}/", 1)[1]
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
        config = json.load(tar.extractfile("model_config.json"))  # type: ignore[arg-type]
    assert {"model.pth", "labels.json", "code/inference.py"} <= names
    assert config["num_classes"] == 3
