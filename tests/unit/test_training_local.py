"""`stepsage train-local`: hyperparameter pass-through, dataset roots (folder or zip), the epoch table."""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import pytest

from stepsage import train_local

pytestmark = pytest.mark.unit


def test_unknown_options_pass_through_in_any_order():
    parser = argparse.ArgumentParser()
    train_local.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train-local", "--epochs", "3", "--data", "d", "--hflip=off", "--lr", "-0.5"])
    assert args.data == "d"
    expected = {"epochs": "3", "hflip": "off", "lr": "-0.5"}
    assert train_local.split_passthrough(args.hyperparameters) == expected


def test_passthrough_rejects_dangling_flags_and_bare_values():
    assert train_local.split_passthrough(["--batch_size", "8"]) == {"batch-size": "8"}
    with pytest.raises(train_local.TrainLocalError, match="needs a value"):
        train_local.split_passthrough(["--epochs"])
    with pytest.raises(train_local.TrainLocalError, match="expected a --hyperparameter"):
        train_local.split_passthrough(["epochs", "3"])


def _layout(root: Path) -> None:
    for split in ("train", "valid"):
        (root / split / "001.a").mkdir(parents=True)
        (root / split / "001.a" / "x.jpg").write_bytes(b"jpeg")


def test_dataset_root_is_the_folder_or_its_single_top_level_folder(tmp_path):
    _layout(tmp_path / "flat")
    assert train_local.find_dataset_root(tmp_path / "flat") == tmp_path / "flat"
    _layout(tmp_path / "nested" / "dogImages")
    (tmp_path / "nested" / "__MACOSX").mkdir()
    assert train_local.find_dataset_root(tmp_path / "nested") == tmp_path / "nested" / "dogImages"
    (tmp_path / "empty").mkdir()
    with pytest.raises(train_local.TrainLocalError, match="no train/ folder"):
        train_local.find_dataset_root(tmp_path / "empty")


@pytest.mark.parametrize("prefix", ["", "dogImages/"])
def test_zip_with_or_without_a_top_level_folder(tmp_path, prefix):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for split in ("train", "valid"):
            handle.writestr(f"{prefix}{split}/001.a/x.jpg", b"jpeg")
    root = train_local.prepare_data(archive, tmp_path / "job")
    assert (root / "train" / "001.a" / "x.jpg").read_bytes() == b"jpeg"
    (tmp_path / "not.zip").write_text("plain text")
    with pytest.raises(train_local.TrainLocalError, match="neither a folder nor a zip"):
        train_local.prepare_data(tmp_path / "not.zip", tmp_path / "job2")


def test_container_environment_points_into_the_job(tmp_path):
    # The emulator's training job: its channels are copied into the job, as SageMaker's File mode does.
    (tmp_path / "data" / "train").mkdir(parents=True)
    job = train_local.training_job(tmp_path / "job", tmp_path / "data", {"epochs": "3"}, cpus=2)
    env = job.environment()
    assert env["SM_MODEL_DIR"] == str(tmp_path / "job" / "model")
    assert env["SM_OUTPUT_DATA_DIR"] == str(tmp_path / "job" / "output" / "data")
    assert env["SM_CHANNEL_TRAIN"] == str(tmp_path / "job" / "input" / "data" / "train")
    assert env["SM_NUM_CPUS"] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert env["SM_CHANNELS"] == '["train"]'
    assert json.loads(env["SM_HPS"]) == {"epochs": "3"}


def test_epoch_lines_become_a_table_and_other_lines_pass_through():
    out = io.StringIO()
    printer = train_local.EpochPrinter(out)
    printer.feed('hyperparameters: {"epochs": 8, "lr": 0.002}\n')
    printer.feed(
        "epoch=3 train_loss=0.41 train_accuracy=0.88 valid_loss=0.52 valid_accuracy=0.873 "
        "lr=0.001 epoch_seconds=2.5 train_img_s=512.3\n"
    )
    printer.feed("test_accuracy=0.97\n")
    lines = out.getvalue().splitlines()
    assert lines[1] == (
        "epoch   3/8  train loss 0.4100 acc 0.8800  |  valid loss 0.5200 acc 0.8730  |    2.5 s,   512 img/s"
    )
    assert lines[2] == "test_accuracy=0.97"
