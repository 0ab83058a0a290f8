"""The smdebug hook on real models: frozen layers, managed configuration, half tensors, no smdebug."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("smdebug")
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import debugging

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _frozen_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("fc.")
    return model


def _steps(hook: debugging.DebugHook, model: nn.Module, criterion: nn.Module, train_steps: int) -> None:
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    hook.set_mode("train")
    model.train()
    for _ in range(train_steps):
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    hook.set_mode("eval")
    model.eval()
    with torch.no_grad():
        criterion(model(x), y)
    hook.close()


def test_frozen_backbone_records_only_the_heads_gradients(tmp_path):
    from smdebug.core.modes import ModeKeys
    from smdebug.trials import create_trial

    torch.set_num_threads(1)
    model, criterion = _frozen_resnet(), nn.CrossEntropyLoss()
    hook = debugging.create_hook(str(tmp_path / "tensors"), save_interval=10)
    assert hook is not None
    hook.attach(model, criterion)
    _steps(hook, model, criterion, train_steps=3)

    trial = create_trial(str(tmp_path / "tensors"))
    assert trial.tensor_names(collection="gradients") == [
        "gradient/ResNet_fc.bias",
        "gradient/ResNet_fc.weight",
    ]
    assert "ResNet_conv1.weight" in trial.tensor_names(collection="weights")
    assert trial.steps(mode=ModeKeys.TRAIN) == [0, 1, 2] and trial.steps(mode=ModeKeys.EVAL) == [0]
    grad = trial.tensor("gradient/ResNet_fc.weight")
    assert grad.reduction_value(0, "mean", abs=True) > 0
    loss = trial.tensor(trial.tensor_names(collection="losses")[0])
    assert loss.value(0) == pytest.approx(loss.value(0), rel=0) and float(loss.value(0)) > 0
    variances = trial.tensor_names(regex="activation_input_variance/.*")
    # The backbone's in-place ReLUs: recorded before they overwrite their input, so a pre-activation
    # variance; after a BatchNorm in training mode that is close to 1, which a post-ReLU value is not.
    assert (
        "activation_input_variance/relu" in variances
        and "activation_input_variance/layer4.1.relu" in variances
    )
    stem = float(trial.tensor("activation_input_variance/relu").value(0))
    assert 0.5 < stem < 1.5
    assert len(hook.activation_layers) == 9


def test_managed_configuration_decides_where_tensors_go(tmp_path, monkeypatch):
    from smdebug.trials import create_trial

    managed_dir = tmp_path / "opt-ml-output-tensors"
    config = {
        "LocalPath": str(managed_dir),
        "HookParameters": {"save_interval": "1"},
        "CollectionConfigurations": [{"CollectionName": "losses"}, {"CollectionName": "gradients"}],
    }
    config_path = tmp_path / "debughookconfig.json"
    config_path.write_text(json.dumps(config))
    monkeypatch.setenv(debugging.MANAGED_CONFIG_ENV, str(config_path))

    torch.set_num_threads(1)
    model, criterion = _frozen_resnet(), nn.CrossEntropyLoss()
    hook = debugging.create_hook(str(tmp_path / "ignored"), save_interval=10)
    assert hook is not None and hook.out_dir == str(managed_dir)
    hook.attach(model, criterion)
    _steps(hook, model, criterion, train_steps=2)

    assert not (tmp_path / "ignored").exists()
    trial = create_trial(str(managed_dir))
    assert trial.tensor_names(collection="gradients") == [
        "gradient/ResNet_fc.bias",
        "gradient/ResNet_fc.weight",
    ]
    assert trial.tensor_names(regex="activation_input_variance/.*")


def test_half_precision_tensors_are_cast_before_numpy(tmp_path):
    hook = debugging.create_hook(str(tmp_path / "tensors"), save_interval=1)
    assert hook is not None
    array = hook.smdebug_hook._make_numpy_array(torch.ones(3, dtype=torch.bfloat16))
    assert array.dtype.name == "float32" and array.tolist() == [1.0, 1.0, 1.0]


def test_without_smdebug_training_gets_none_and_a_reason(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "smdebug", None)
    assert debugging.create_hook("/tmp/nowhere") is None
    assert "smdebug cannot be imported" in capsys.readouterr().out


def test_unknown_mode_is_refused(tmp_path):
    hook = debugging.create_hook(str(tmp_path), save_interval=1)
    assert hook is not None
    with pytest.raises(ValueError, match="allowed: train, eval"):
        hook.set_mode("predict")


def test_a_finished_trial_in_the_way_is_set_aside(tmp_path):
    out_dir = tmp_path / "tensors"
    out_dir.mkdir()
    (out_dir / "training_job_end.ts").write_text("1")
    hook = debugging.create_hook(str(out_dir), save_interval=1)
    assert hook is not None
    assert (tmp_path / "tensors-previous" / "training_job_end.ts").is_file()
    assert not (out_dir / "training_job_end.ts").exists()
