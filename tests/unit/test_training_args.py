"""train.py's hyperparameters: loud, listed choices; SageMaker's keys ignored; `auto` resolved sensibly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import train
from architectures import ARCHITECTURES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["--model", "vgg99"], list(ARCHITECTURES)),
        (["--weights", "coco"], ["imagenet", "none"]),
        (["--optimizer", "lion"], list(train.OPTIMIZERS)),
        (["--trainable", "some"], ["all", "last", "head"]),
        (["--augment", "wild"], ["none", "light", "standard", "strong"]),
        (["--hflip", "maybe"], ["on", "off"]),
        (["--precision", "fp8"], ["auto", "fp32", "bf16", "fp16"]),
    ],
)
def test_invalid_choice_fails_and_lists_allowed_values(argv, allowed, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    for value in allowed:
        assert repr(value) in message


def test_sagemaker_keys_are_ignored_and_underscores_accepted():
    args = train.parse_args(
        [
            "--sagemaker_program",
            "train.py",
            "--batch_size",
            "16",
            "--sagemaker_region=us-east-1",
            "--hflip",
            "off",
        ]
    )
    assert args.batch_size == 16
    assert args.hflip is False


def test_unknown_hyperparameter_is_rejected(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--learning-rate", "0.1"])
    assert "--learning-rate" in capsys.readouterr().err


def test_non_positive_epochs_rejected(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--epochs", "0"])
    assert "must be > 0" in capsys.readouterr().err


def test_auto_resolution_from_scratch_follows_the_data():
    hp = train.resolve_hyperparameters(train.parse_args(["--weights", "none"]), median_side=30)
    assert hp["model"] == "resnet18"
    assert hp["image_size"] == 32
    assert hp["lr"] == pytest.approx(2e-3)
    assert hp["backbone_lr_scale"] == 1.0
    assert hp["weight_decay"] == pytest.approx(0.05)
    big = train.resolve_hyperparameters(train.parse_args(["--weights", "none"]), median_side=500)
    assert big["image_size"] == 224


def test_auto_resolution_for_transfer_learning():
    hp = train.resolve_hyperparameters(
        train.parse_args(["--optimizer", "sgd", "--batch-size", "128"]), median_side=20
    )
    assert hp["model"] == "resnet50"
    assert hp["image_size"] == 224
    assert hp["lr"] == pytest.approx(0.04 * 128 / 256)
    assert hp["backbone_lr_scale"] == pytest.approx(0.1)
    assert hp["weight_decay"] == pytest.approx(1e-4)
    explicit = train.resolve_hyperparameters(train.parse_args(["--lr", "0.3", "--image-size", "96"]), 20)
    assert explicit["lr"] == 0.3 and explicit["image_size"] == 96


def test_lr_schedule_warms_up_then_decays_to_zero():
    def at(step, schedule="cosine"):
        return train.lr_multiplier(step, total_steps=100, warmup_steps=10, schedule=schedule)

    assert at(0) == pytest.approx(0.1)
    assert at(9) == pytest.approx(1.0)
    assert at(10) == pytest.approx(1.0)
    assert at(55) == pytest.approx(0.5)
    assert at(100) == pytest.approx(0.0, abs=1e-9)
    assert at(60, "step") == pytest.approx(0.1)
    assert at(90, "step") == pytest.approx(0.01)
    assert at(90, "constant") == 1.0


@pytest.mark.parametrize(
    ("trainable", "name"),
    [("head", "resnet18"), ("last", "resnet18"), ("last", "mobilenet_v3_large"), ("head", "convnext_tiny")],
)
def test_trainable_parts_and_frozen_batchnorm(trainable, name):
    from torch import nn

    from architectures import build_model

    model = build_model(name, 4, "none")
    head_params = train.set_trainable(model, trainable)
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in head_params} <= trained
    assert 0 < len(trained) < len(list(model.parameters()))
    if trainable == "head":
        assert trained == {id(p) for p in head_params}
    train.train_mode(model)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.training == any(p.requires_grad for p in module.parameters())


def test_optimizer_skips_frozen_and_decays_only_weights():
    from architectures import build_model

    model = build_model("resnet18", 3, "none")
    head = train.set_trainable(model, "last")
    hp = train.resolve_hyperparameters(train.parse_args(["--weights", "imagenet"]), 224)
    optimizer = train.build_optimizer(model, head, hp)
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == sum(p.requires_grad for p in model.parameters())
    for group in optimizer.param_groups:
        is_head = any(p is head[0] or p is head[1] for p in group["params"])
        assert group["lr"] == pytest.approx(hp["lr"] * (1 if is_head else 0.1))
        assert (group["weight_decay"] > 0) == all(p.ndim > 1 for p in group["params"])


def test_bad_hyperparameter_reaches_sagemakers_failure_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(tmp_path / "output" / "data"))
    with pytest.raises(SystemExit):
        train.parse_args(["--model", "vgg99"])
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("invalid hyperparameters:") and "vgg99" in failure and "resnet50" in failure


def test_rule_parameters_span_the_run_and_take_overrides():
    params = train.rule_parameters(train_steps=10, valid_steps=3, epochs=8, patience=5)
    # A batch is compared with one half a run (4 epochs of 10 steps) earlier.
    assert params["LossNotDecreasing"] == {"num_steps": 40}
    # Overtraining waits one epoch longer than early stopping's patience of 5.
    assert params["Overtraining"] == {"patience_train": 60, "patience_validation": 18, "delta": 0.0}
    # Overfit judges the second half: 4 epochs of 13 global steps each come first.
    assert params["Overfit"] == {"start_step": 52, "patience": 2}
    assert params["PoorWeightInitialization"] == {"steps": 10, "patience": 5}
    assert train.rule_parameters(40, 3, 8, 5)["PoorWeightInitialization"] == {"steps": 40, "patience": 20}
    never_stops = train.rule_parameters(10, 3, 8, patience=0)
    assert never_stops["Overtraining"]["patience_train"] == 40
    tuned = train.rule_parameters(
        10, 3, 8, 5, {"Overfit": {"ratio_threshold": 0.3}, "ExplodingTensor": {"only_nan": True}}
    )
    assert tuned["Overfit"] == {"start_step": 52, "patience": 2, "ratio_threshold": 0.3}
    assert tuned["ExplodingTensor"] == {"only_nan": True}


def test_rule_params_argument_must_be_json_objects_by_rule():
    args = train.parse_args(["--rule-params", '{"Overfit": {"patience": 3}}'])
    assert args.rule_params == {"Overfit": {"patience": 3}}
    for bad in ("not json", '["Overfit"]', '{"Overfit": 3}'):
        with pytest.raises(SystemExit):
            train.parse_args(["--rule-params", bad])
