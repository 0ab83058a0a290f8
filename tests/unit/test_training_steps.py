"""train.py's steps: when an epoch counts as better, when patience runs out, and what a restart resumes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import checkpoints
import train

pytestmark = pytest.mark.unit

BEST = {"epoch": 2, "valid_accuracy": 0.80, "valid_loss": 0.50}


@pytest.mark.parametrize(
    ("accuracy", "loss", "min_delta", "expected"),
    [
        (0.85, 0.90, 0.0, True),  # more accurate, whatever the loss
        (0.85, 0.60, 0.1, False),  # a gain within min_delta at a higher loss
        (0.80, 0.40, 0.1, True),  # as accurate at a lower loss
        (0.80, 0.50, 0.0, False),  # a tie is no improvement
        (0.79, 0.10, 0.0, False),  # less accurate, whatever the loss
    ],
)
def test_an_epoch_improves_on_accuracy_then_on_loss(accuracy, loss, min_delta, expected):
    record = {"epoch": 3, "valid_accuracy": accuracy, "valid_loss": loss}
    assert train.improves(record, BEST, min_delta) is expected


def test_the_first_epoch_always_improves_on_a_fresh_start():
    fresh = train.Progress(best_state={}).best
    assert train.improves({"valid_accuracy": 0.0, "valid_loss": 9.0}, fresh, 0.0)


@pytest.mark.parametrize(
    ("stale", "patience", "epoch", "expected"),
    [(3, 3, 5, True), (2, 3, 5, False), (3, 3, 10, False), (99, 0, 5, False)],
)
def test_patience_stops_only_before_the_last_epoch_and_zero_never_stops(stale, patience, epoch, expected):
    assert train.stops_early(stale, patience, epoch, epochs=10) is expected


def _training(seed: int) -> train.Training:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return train.Training(model, nn.CrossEntropyLoss(), optimizer, scheduler, torch.amp.GradScaler("cpu"))


def _after_epoch_three(directory: Path, training: train.Training, fingerprint: str) -> train.Progress:
    loss = training.criterion(training.model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
    loss.backward()
    training.optimizer.step()
    training.scheduler.step()
    progress = train.Progress(
        best_state={k: v.clone() + 1 for k, v in training.model.state_dict().items()},
        history=[{"epoch": e} for e in (1, 2, 3)],
        best=dict(BEST),
        stale_epochs=1,
    )
    checkpoints.save_best(directory, progress.best_state, 2, progress.best)
    checkpoints.save_checkpoint(directory, 3, train.checkpoint_state(training, progress, fingerprint))
    return progress


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_restart_resumes_its_own_checkpoint_with_the_best_weights(tmp_path):
    saved = _training(seed=0)
    before = _after_epoch_three(tmp_path, saved, "run-a")

    restarted = _training(seed=1)
    progress = train.resume(tmp_path, "run-a", restarted)

    assert progress.next_epoch == 4 and progress.history == before.history
    assert progress.best == BEST and progress.stale_epochs == 1 and not progress.stopped_early
    assert progress.resumed_from == str(checkpoints.checkpoint_path(tmp_path, 3))
    assert _same_weights(restarted.model.state_dict(), saved.model.state_dict())
    assert _same_weights(progress.best_state, before.best_state)
    assert restarted.scheduler.last_epoch == saved.scheduler.last_epoch == 1


def test_a_checkpoint_of_another_run_is_ignored(tmp_path, capsys):
    _after_epoch_three(tmp_path, _training(seed=0), "run-a")
    fresh = _training(seed=1)
    initial = {k: v.clone() for k, v in fresh.model.state_dict().items()}

    progress = train.resume(tmp_path, "run-b", fresh)

    assert progress.next_epoch == 1 and progress.history == [] and progress.resumed_from is None
    assert _same_weights(fresh.model.state_dict(), initial) and _same_weights(progress.best_state, initial)
    assert "belongs to a different run or dataset" in capsys.readouterr().out


def test_without_the_best_weights_the_resumed_weights_stand_in(tmp_path, capsys):
    saved = _training(seed=0)
    _after_epoch_three(tmp_path, saved, "run-a")
    (tmp_path / checkpoints.BEST_FILE).unlink()

    progress = train.resume(tmp_path, "run-a", _training(seed=1))

    assert progress.next_epoch == 4
    assert _same_weights(progress.best_state, saved.model.state_dict())
    assert "best weights missing" in capsys.readouterr().out
