"""train.py as SageMaker runs it: a subprocess under the container contract, on a tiny generated dataset."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from shapes_dataset import draw_shape

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_CODE = REPO_ROOT / "training_code"
sys.path.insert(0, str(TRAINING_CODE))
import architectures  # noqa: E402
import metrics  # noqa: E402
from stepsage import train_local  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES = ("001.circle", "002.square", "003.cross")
FAST = ["--weights", "none", "--model", "resnet18", "--image-size", "16", "--batch-size", "8", "--seed", "7",
        "--patience", "0"]  # fmt: skip
EPOCHS = 4
ARTIFACT_FILES = {
    "model.pth",
    "model_config.json",
    "labels.json",
    "evaluation.json",
    "run.json",
    "code/inference.py",
    "code/presets.py",
    "code/architectures.py",
    "code/requirements.txt",
    # The serving container's copy of the shared contracts (contracts.artifact.CONTRACTS_PACKAGE).
    *(f"code/contracts/{path.name}" for path in (REPO_ROOT / "contracts").glob("*.py")),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    for split, count in (("train", 8), ("valid", 3), ("test", 3)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                draw_shape(label, index + (0 if split == "train" else 100)).save(
                    folder / f"{name[4:]}_{index}.jpg"
                )
    return root


def _environment(job: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SM_CHANNEL_TRAIN": str(data / "train"),
            "SM_CHANNEL_VALID": str(data / "valid"),
            "SM_CHANNEL_TEST": str(data / "test"),
            "SM_MODEL_DIR": str(job / "model"),
            "SM_OUTPUT_DATA_DIR": str(job / "output" / "data"),
            "SM_NUM_CPUS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _train(job: Path, data: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    job.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(TRAINING_CODE / "train.py"), *args, "--checkpoint-dir", str(job / "ckpt")]
    return subprocess.run(
        command, env=_environment(job, data), capture_output=True, text=True, timeout=timeout, cwd=job
    )


@pytest.fixture(scope="module")
def local_job(dataset, tmp_path_factory):
    """One run through `stepsage train-local`, the same contract the local emulator uses."""
    out = io.StringIO()
    job = tmp_path_factory.mktemp("job")
    hyperparameters = dict(zip(FAST[::2], FAST[1::2], strict=True))
    hyperparameters = {k[2:]: v for k, v in hyperparameters.items()}
    result = train_local.train_local(
        dataset, job, {**hyperparameters, "epochs": str(EPOCHS)}, cpus=1, stream=out
    )
    return result, out.getvalue(), job


def test_artifact_matches_the_contract(local_job):
    result, printed, job = local_job
    assert result["returncode"] == 0, printed
    model_dir = Path(result["model_dir"])
    files = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert files == ARTIFACT_FILES

    config = json.loads((model_dir / "model_config.json").read_text())
    assert set(config) == {"architecture", "num_classes", "image_size", "mean", "std", "precision"}
    assert config["architecture"] == "resnet18" and config["num_classes"] == 3 and config["image_size"] == 16
    assert json.loads((model_dir / "labels.json").read_text()) == list(CLASSES)

    state = torch.load(model_dir / "model.pth", weights_only=True)
    model = architectures.build_model("resnet18", 3, "none")
    model.load_state_dict(state)
    assert all(tensor.is_contiguous() for tensor in state.values())

    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    assert set(evaluation) == {"accuracy", "labels", "per_class", "confusion_matrix"}
    assert evaluation["labels"] == list(CLASSES)
    assert sum(map(sum, evaluation["confusion_matrix"])) == 9
    assert all(evaluation["per_class"][label]["support"] == 3 for label in CLASSES)
    assert evaluation == json.loads((job / "output" / "data" / "evaluation.json").read_text())

    run = json.loads((model_dir / "run.json").read_text())
    assert run["seed"] == 7 and len(run["dataset_hash"]) == 64 and len(run["code_version"]) == 16
    assert run["precision"] == config["precision"] and run["precision"] in ("fp32", "bf16")
    assert run["hyperparameters"]["epochs"] == EPOCHS and run["hyperparameters"]["lr"] == pytest.approx(2e-3)
    assert run["runtime"]["num_threads"] == 1
    assert (model_dir / "code" / "inference.py").read_bytes() == (
        REPO_ROOT / "inference_code" / "inference.py"
    ).read_bytes()


def test_metric_lines_parse_and_match_metrics_json(local_job):
    result, printed, job = local_job
    log = Path(result["log"]).read_text()
    parsed = metrics.parse_metrics(log)
    history = json.loads((job / "output" / "data" / "metrics.json").read_text())
    epochs = history["epochs"]
    assert [record["epoch"] for record in epochs] == list(range(1, EPOCHS + 1))
    assert parsed["valid:accuracy"] == pytest.approx([r["valid_accuracy"] for r in epochs], abs=1e-5)
    assert parsed["train:loss"] == pytest.approx([r["train_loss"] for r in epochs], rel=1e-5)
    assert parsed["test:accuracy"] == pytest.approx([history["test_accuracy"]], abs=1e-5)
    evaluation = json.loads((job / "model" / "evaluation.json").read_text())
    assert history["test_accuracy"] == evaluation["accuracy"]
    # train-local shows the epochs as a table while they run
    assert f"epoch   1/{EPOCHS}  train loss" in printed and f"epoch   {EPOCHS}/{EPOCHS}" in printed


def test_resume_after_a_kill_continues_the_same_run(dataset, local_job, tmp_path):
    args = [*FAST, "--epochs", str(EPOCHS)]
    # The uninterrupted reference: the train-local run, same hyperparameters and data.
    expected = json.loads((local_job[2] / "output" / "data" / "metrics.json").read_text())["epochs"]

    job = tmp_path / "killed"
    job.mkdir()
    command = [sys.executable, str(TRAINING_CODE / "train.py"), *args, "--checkpoint-dir", str(job / "ckpt")]
    process = subprocess.Popen(command, env=_environment(job, dataset), stdout=subprocess.DEVNULL, cwd=job)
    deadline = time.monotonic() + 90
    while not list((job / "ckpt").glob("checkpoint-epoch*.pt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # a spot interruption gives no chance to clean up
    process.wait()
    done = sorted((job / "ckpt").glob("checkpoint-epoch*.pt"))
    assert done, "no checkpoint was written before the deadline"
    killed_at = int(done[-1].stem[-4:])
    assert killed_at < EPOCHS, "the run finished before it could be interrupted"

    resumed = _train(job, dataset, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {done[-1]}" in resumed.stdout
    first_epoch_line = next(line for line in resumed.stdout.splitlines() if line.startswith("epoch="))
    assert first_epoch_line.startswith(f"epoch={killed_at + 1} ")
    history = json.loads((job / "output" / "data" / "metrics.json").read_text())["epochs"]
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    for got, want in zip(history, expected, strict=True):
        for key in ("train_loss", "valid_loss", "valid_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (got["epoch"], key)


def test_head_only_training_leaves_the_backbone_untouched(dataset, tmp_path):
    completed = _train(tmp_path, dataset, *FAST, "--epochs", "1", "--trainable", "head")
    assert completed.returncode == 0, completed.stderr
    state = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    torch.manual_seed(7)  # train.py seeds before building the model
    initial = architectures.build_model("resnet18", 3, "none").state_dict()
    for key, value in initial.items():
        if key.startswith("fc."):
            assert not torch.equal(value, state[key]), key
        elif value.is_floating_point():
            assert torch.equal(value, state[key]), key  # weights and frozen BatchNorm statistics


def _copy_split(source: Path, dest: Path) -> None:
    for image in source.rglob("*.jpg"):
        target = dest / image.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())


def test_dataset_errors_name_the_class_and_the_file(dataset, tmp_path):
    broken = tmp_path / "data"
    for split in ("train", "valid", "test"):
        _copy_split(dataset / split, broken / split)
    for image in (broken / "test" / "001.circle").iterdir():
        image.unlink()
    (broken / "valid" / "002.square" / "corrupt.jpg").write_bytes(b"not a jpeg")

    completed = _train(tmp_path / "job", broken, *FAST, "--epochs", "1")
    assert completed.returncode == 1
    assert "EmptyClassError" in completed.stderr and "001.circle" in completed.stderr
    assert "001.circle" in (tmp_path / "job" / "output" / "failure").read_text()

    _copy_split(dataset / "test" / "001.circle", broken / "test" / "001.circle")
    completed = _train(tmp_path / "job", broken, *FAST, "--epochs", "1")
    assert completed.returncode == 1
    assert "UnreadableImageError" in completed.stderr and "corrupt.jpg" in completed.stderr


def test_debug_hook_rules_and_profile_with_a_frozen_backbone(dataset, tmp_path):
    pytest.importorskip("smdebug")
    completed = _train(
        tmp_path, dataset, *FAST, "--epochs", "2", "--trainable", "head", "--debug-hook", "on",
        "--hook-save-interval", "2", "--profile", "on",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = tmp_path / "output" / "data"
    assert list((output / "tensors").rglob("*.tfevents")) or list((output / "tensors" / "events").iterdir())
    verdicts = json.loads((output / "rules" / "verdicts.json").read_text())
    assert len(verdicts["rules"]) == 6
    assert {rule["status"] for rule in verdicts["rules"]} <= {"NoIssuesFound", "IssuesFound", "Error"}
    assert verdicts["issues_found"] == any(rule["status"] == "IssuesFound" for rule in verdicts["rules"])
    profile = json.loads((output / "profiler" / "profile.json").read_text())
    assert set(profile["phases"]) == {"data", "forward", "backward", "optimizer"}
    assert profile["phases"]["forward"]["steps"] == 2 * 3  # two epochs of three batches
    run = json.loads((tmp_path / "model" / "run.json").read_text())
    assert run["precision"] == "fp32" and "hook" in run["runtime"]["precision_reason"]
