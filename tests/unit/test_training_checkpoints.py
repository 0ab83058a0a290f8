"""Checkpoints: atomic writes, only the newest kept, an exact resume of model, optimizer, schedule and RNG."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import checkpoints

pytestmark = pytest.mark.unit


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def _steps(setup: tuple, n: int) -> tuple[float, float]:
    model, optimizer, scheduler = setup
    for _ in range(n):
        x = torch.randn(16, 4)
        y = torch.randint(0, 3, (16,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return random.random(), float(np.random.rand())


def _state(model, optimizer, scheduler):
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": checkpoints.capture_rng_state(),
        "history": [{"epoch": 1, "valid_accuracy": 0.5}],
    }


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    random.seed(1)
    np.random.seed(1)
    reference = _setup()
    _steps(reference, 5)
    expected_draws = _steps(reference, 5)

    random.seed(1)
    np.random.seed(1)
    interrupted = _setup()
    _steps(interrupted, 5)
    checkpoints.save_checkpoint(tmp_path, 1, _state(*interrupted))
    _steps(interrupted, 3)  # work lost to the interruption

    found = checkpoints.latest_checkpoint(tmp_path)
    assert found is not None
    path, state = found
    assert path.name == "checkpoint-epoch0001.pt" and state["epoch"] == 1
    assert state["history"] == [{"epoch": 1, "valid_accuracy": 0.5}]
    resumed = _setup(seed=99)
    resumed[0].load_state_dict(state["model"])
    resumed[1].load_state_dict(state["optimizer"])
    resumed[2].load_state_dict(state["scheduler"])
    checkpoints.restore_rng_state(state["rng"])
    draws = _steps(resumed, 5)

    assert draws == expected_draws
    assert resumed[2].get_last_lr() == reference[2].get_last_lr()
    for key, value in reference[0].state_dict().items():
        assert torch.equal(value, resumed[0].state_dict()[key]), key


def test_only_the_newest_checkpoint_is_kept_and_no_temp_files_remain(tmp_path):
    model, optimizer, scheduler = _setup()
    for epoch in (1, 2, 3):
        checkpoints.save_checkpoint(tmp_path, epoch, _state(model, optimizer, scheduler))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-epoch0003.pt"]


def test_a_torn_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    model, optimizer, scheduler = _setup()
    checkpoints.save_checkpoint(tmp_path, 1, _state(model, optimizer, scheduler), keep=2)
    checkpoints.save_checkpoint(tmp_path, 2, _state(model, optimizer, scheduler), keep=2)
    newest = checkpoints.checkpoint_path(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[:100])
    found = checkpoints.latest_checkpoint(tmp_path)
    assert found is not None
    path, state = found
    assert path.name == "checkpoint-epoch0001.pt" and state["epoch"] == 1
    with pytest.raises(checkpoints.CheckpointError, match="epoch0002"):
        checkpoints.load_checkpoint(newest)


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert checkpoints.latest_checkpoint(tmp_path) is None
    assert checkpoints.latest_checkpoint(tmp_path / "absent") is None
    assert checkpoints.load_best(tmp_path) is None


def test_best_weights_round_trip(tmp_path):
    model, _, _ = _setup()
    checkpoints.save_best(tmp_path, model.state_dict(), 4, {"valid_accuracy": 0.9})
    best = checkpoints.load_best(tmp_path)
    assert best is not None
    assert best["epoch"] == 4 and best["metrics"] == {"valid_accuracy": 0.9}
    assert torch.equal(best["model"]["0.weight"], model.state_dict()["0.weight"])
