"""launch_hpo's pure parts: the deterministic code bundle and the tuning request per strategy."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
from events_fixture import ROOT, load_event, load_lambda_module

pytestmark = pytest.mark.unit

code_bundle = load_lambda_module("launch_hpo", "code_bundle")
tuning_request = load_lambda_module("launch_hpo", "tuning_request")
from stepsage_lambda.errors import ConfigurationError  # noqa: E402
from stepsage_lambda.payloads import StagedDataset  # noqa: E402
from stepsage_lambda.settings import TrainingSettings  # noqa: E402

ENV = {
    "ARTIFACTS_BUCKET": "stepsage-artifacts-123456789012",
    "TRAINING_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-gpu-py311",
    "AWS_REGION": "us-east-1",
    "STACK_NAME": "stepsage-test",
}


def _code_dir(root: Path, mtime: int) -> Path:
    files = {
        "training_code/train.py": "print('train')\n",
        "training_code/metrics.py": "METRIC_DEFINITIONS = [{'Name': 'valid:accuracy', 'Regex': 'a=(1)'}]\n"
        "OBJECTIVE_METRIC = 'valid:accuracy'\nOBJECTIVE_TYPE = 'Maximize'\n",
        "training_code/__pycache__/train.cpython-311.pyc": "junk",
        "inference_code/inference.py": "def model_fn(d): ...\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (mtime, mtime))
    return root


def test_bundle_bytes_depend_only_on_content(tmp_path: Path) -> None:
    first = code_bundle.build_sourcedir(_code_dir(tmp_path / "a", 1_000_000))
    second = code_bundle.build_sourcedir(_code_dir(tmp_path / "b", 2_000_000))
    assert first == second
    assert code_bundle.bundle_key(first) == code_bundle.bundle_key(second)
    (tmp_path / "b" / "training_code" / "train.py").write_text("print('changed')\n")
    assert code_bundle.bundle_key(code_bundle.build_sourcedir(tmp_path / "b")) != code_bundle.bundle_key(
        first
    )


def test_bundle_layout_training_at_root_inference_beneath(tmp_path: Path) -> None:
    tarball = code_bundle.build_sourcedir(_code_dir(tmp_path, 5))
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["inference_code/inference.py", "metrics.py", "train.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    key = code_bundle.bundle_key(tarball)
    assert (
        key.startswith("code/sourcedir-")
        and key.endswith(".tar.gz")
        and len(key) == len("code/sourcedir-.tar.gz") + 16
    )


def test_missing_code_folder_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "training_code").mkdir()
    with pytest.raises(code_bundle.CodeDirError, match="inference_code"):
        code_bundle.build_sourcedir(tmp_path)


def test_metric_definitions_come_from_the_repos_metrics_module() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_repo_metrics", ROOT / "training_code" / "metrics.py")
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert code_bundle.metric_definitions(ROOT) == module.METRIC_DEFINITIONS
    assert code_bundle.tuning_objective(ROOT) == {
        "Type": module.OBJECTIVE_TYPE,
        "MetricName": module.OBJECTIVE_METRIC,
    }


def _request(**env: str) -> dict[str, Any]:
    merged = {**ENV, **env}
    return tuning_request.build_tuning_request(
        execution_name="digits-1c0f6a2d9b3e",
        dataset=StagedDataset.model_validate(load_event("launch_hpo")["dataset"]),
        role_arn="arn:aws:iam::123456789012:role/sm",
        code_uri="s3://stepsage-artifacts-123456789012/code/sourcedir-0123456789abcdef.tar.gz",
        metric_definitions=[{"Name": "valid:accuracy", "Regex": "valid_accuracy=([0-9.]+)"}],
        objective={"Type": "Maximize", "MetricName": "valid:accuracy"},
        settings=TrainingSettings.from_env(merged),
        tuning=tuning_request.TuningSettings.from_env(merged),
    )


def test_bayesian_request() -> None:
    request = _request(MAX_TRAINING_JOBS="6", MAX_PARALLEL_TRAINING_JOBS="3")
    config, definition = request["HyperParameterTuningJobConfig"], request["TrainingJobDefinition"]
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    lr = next(r for r in config["ParameterRanges"]["ContinuousParameterRanges"] if r["Name"] == "lr")
    assert lr["ScalingType"] == "Logarithmic" and float(lr["MinValue"]) == 1e-4
    static = definition["StaticHyperParameters"]
    assert static["sagemaker_program"] == "train.py"
    assert static["sagemaker_submit_directory"].endswith("sourcedir-0123456789abcdef.tar.gz")
    assert (static["debug-hook"], static["profile"]) == ("off", "off")
    assert (static["model"], static["image-size"]) == ("auto", "auto")
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == ["train", "valid", "test"]
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert definition["EnableManagedSpotTraining"] is False
    assert {"Key": "stepsage:stack", "Value": "stepsage-test"} in request["Tags"]


def test_grid_is_categorical_only_and_counts_its_combinations() -> None:
    config = _request(TUNING_STRATEGY="grid", MAX_PARALLEL_TRAINING_JOBS="50")[
        "HyperParameterTuningJobConfig"
    ]
    ranges = config["ParameterRanges"]
    assert set(ranges) == {"CategoricalParameterRanges"}
    assert ranges["CategoricalParameterRanges"][0]["Values"] == ["0.0001", "0.001", "0.01"]
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 12}


def test_hyperband_turns_early_stopping_off_and_bounds_epochs() -> None:
    config = _request(TUNING_STRATEGY="Hyperband", EPOCHS="7")["HyperParameterTuningJobConfig"]
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 7}}


def test_spot_adds_a_wait_at_least_the_runtime() -> None:
    definition = _request(USE_SPOT_TRAINING="true", MAX_RUNTIME_SECONDS="900", MAX_WAIT_SECONDS="60")[
        "TrainingJobDefinition"
    ]
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 900, "MaxWaitTimeInSeconds": 900}
    assert "CheckpointConfig" not in definition


def test_model_and_image_size_come_from_the_environment() -> None:
    static = _request(MODEL_ARCHITECTURE="efficientnet_b0", IMAGE_SIZE="192")["TrainingJobDefinition"][
        "StaticHyperParameters"
    ]
    assert (static["model"], static["image-size"]) == ("efficientnet_b0", "192")
    with pytest.raises(ConfigurationError, match="IMAGE_SIZE"):
        _request(IMAGE_SIZE="8")


def test_bad_settings_name_the_allowed_values() -> None:
    with pytest.raises(ConfigurationError, match="Bayesian, Random, Hyperband, Grid"):
        _request(TUNING_STRATEGY="Annealing")
    with pytest.raises(ConfigurationError, match="USE_SPOT_TRAINING"):
        _request(USE_SPOT_TRAINING="maybe")


def test_extra_hyperparameters_reach_every_trial_and_bad_ones_are_refused() -> None:
    static = _request(EXTRA_HYPERPARAMETERS="hflip=off, patience=3")["TrainingJobDefinition"][
        "StaticHyperParameters"
    ]
    assert (static["hflip"], static["patience"]) == ("off", "3")
    for bad in ("hflip", "Hflip=off", "sagemaker_program=x.py", "lr="):
        with pytest.raises(ConfigurationError, match="EXTRA_HYPERPARAMETERS"):
            _request(EXTRA_HYPERPARAMETERS=bad)
