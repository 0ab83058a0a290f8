"""Each rule fires on a real smdebug trial built to trip it, and stays quiet on a healthy one."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("smdebug")
import torch
from torch import nn

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"
sys.path.insert(0, str(TRAINING_CODE))
import debugging  # noqa: E402
import rules  # noqa: E402

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


@dataclass
class Run:
    lr: float = 0.01
    epochs: int = 2
    steps_per_epoch: int = 6
    output_scale: float = 1.0
    nan_at_step: int | None = None
    random_labels: bool = False
    train_samples: int = 240
    hidden_gain: float = 1.0


def _clusters(
    samples: int, generator: torch.Generator, random_labels: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4, [-1.0] * 8])
    labels = torch.arange(samples) % 3
    x = centers[labels] + torch.randn(samples, 8, generator=generator)
    if random_labels:
        labels = torch.randint(0, 3, (samples,), generator=generator)
    return x, labels


def train_trial(out_dir: Path, run: Run) -> Path:
    """A few full-batch steps of a small MLP with the real hook; one validation batch per epoch."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _clusters(run.train_samples, generator, run.random_labels)
    x_valid, y_valid = _clusters(120, generator, run.random_labels)
    first, hidden, head = nn.Linear(8, 32), nn.Linear(32, 32), nn.Linear(32, 3)
    for layer in (first, hidden, head):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    with torch.no_grad():
        hidden.weight.mul_(run.hidden_gain)
    model = nn.Sequential(first, nn.ReLU(), hidden, nn.ReLU(), head, Scale(run.output_scale))
    criterion = nn.CrossEntropyLoss()
    hook = debugging.create_hook(str(out_dir), save_interval=1)
    assert hook is not None
    hook.attach(model, criterion)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr)
    step = 0
    for _ in range(run.epochs):
        hook.set_mode("train")
        for _ in range(run.steps_per_epoch):
            if run.nan_at_step is not None and step == run.nan_at_step:
                with torch.no_grad():
                    first.weight[0, 0] = math.nan
            optimizer.zero_grad()
            criterion(model(x_train), y_train).backward()
            optimizer.step()
            step += 1
        hook.set_mode("eval")
        with torch.no_grad():
            criterion(model(x_valid), y_valid)
    hook.close()
    return out_dir


SCENARIOS = {
    "healthy": Run(),
    "vanishing": Run(output_scale=1e-9),
    "stuck": Run(lr=0.0),
    "nan": Run(nan_at_step=5),
    "overfit": Run(random_labels=True, train_samples=9, lr=0.05, epochs=3),
    "poor_init": Run(hidden_gain=30.0),
}


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from smdebug.trials import create_trial

    built = {}
    for name, run in SCENARIOS.items():
        built[name] = create_trial(str(train_trial(tmp_path_factory.mktemp(name), run)))
    return built


def verdict(trials: dict[str, Any], scenario: str, rule: str, **params: Any) -> dict[str, Any]:
    return rules.run_rule(trials[scenario], rules.RULES[rule], params or None)


def test_healthy_run_is_quiet_and_every_rule_looked(trials, tmp_path):
    result = rules.evaluate_trial(trials["healthy"].path, str(tmp_path / "rules" / "verdicts.json"))
    written = json.loads((tmp_path / "rules" / "verdicts.json").read_text())
    assert written == result
    assert [v["name"] for v in result["rules"]] == list(rules.RULES)
    assert {v["name"]: v["status"] for v in result["rules"]} == dict.fromkeys(rules.RULES, "NoIssuesFound")
    assert all(v["evidence"]["evaluated"] for v in result["rules"]), result
    assert result["issues_found"] is False
    assert result["training_complete"] is True
    assert result["rules"][0]["params"] == {"threshold": 1e-7}


def test_vanishing_gradient_fires_on_a_model_scaled_to_starve_its_gradients(trials):
    fired = verdict(trials, "vanishing", "VanishingGradient")
    assert fired["status"] == "IssuesFound"
    evidence = fired["evidence"]
    assert evidence["first_step"] == 0
    assert "gradient/Sequential_0.weight" in evidence["vanishing_layers"]
    assert evidence["smallest_mean_abs_gradient"] < 1e-7
    series = evidence["series"]["mean_abs_gradient"]["gradient/Sequential_0.weight"]
    assert len(series) == 12 and all(value < 1e-7 for _, value in series)
    healthy = verdict(trials, "healthy", "VanishingGradient")
    assert healthy["status"] == "NoIssuesFound"
    assert healthy["evidence"]["smallest_mean_abs_gradient"] > 1e-4


def test_exploding_tensor_finds_an_injected_nan_from_its_step_on(trials):
    fired = verdict(trials, "nan", "ExplodingTensor")
    assert fired["status"] == "IssuesFound"
    evidence = fired["evidence"]
    assert evidence["first_step"] == 5
    assert {"tensor": "Sequential_0.weight", "step": 5, "kind": "nan"} in evidence["offending"]
    per_step = dict(map(tuple, evidence["series"]["nonfinite_tensors"]))
    assert per_step[4] == 0 and per_step[5] > 0
    losses = evidence["series"]["loss"]["CrossEntropyLoss_output_0"]
    assert losses[4][1] is not None and losses[5][1] is None
    assert "nan" in fired["message"]
    activations_only = verdict(trials, "nan", "ExplodingTensor", tensor_regex="activation_input_variance/.*")
    assert activations_only["status"] == "IssuesFound"
    assert activations_only["evidence"]["tensors_inspected"] == 2
    assert verdict(trials, "healthy", "ExplodingTensor")["status"] == "NoIssuesFound"


def test_loss_not_decreasing_fires_when_nothing_learns(trials):
    fired = verdict(trials, "stuck", "LossNotDecreasing")
    assert fired["status"] == "IssuesFound"
    check = fired["evidence"]["checks"][0]
    assert (check["step"], check["baseline_step"], check["not_decreasing"]) == (10, 0, True)
    assert check["loss"] == pytest.approx(check["baseline_loss"])
    assert len(fired["evidence"]["series"]["loss"]["CrossEntropyLoss_output_0"]) == 12
    assert fired["params"]["mode"] == "TRAIN"
    healthy = verdict(trials, "healthy", "LossNotDecreasing")
    assert healthy["status"] == "NoIssuesFound"
    assert healthy["evidence"]["checks"][0]["decrease_percent"] > 10


def test_loss_not_decreasing_without_enough_steps_is_quiet_and_says_so(trials):
    short = verdict(trials, "stuck", "LossNotDecreasing", num_steps=50)
    assert short["status"] == "NoIssuesFound"
    assert short["evidence"]["evaluated"] is False
    assert "not enough TRAIN steps" in short["message"]


def test_overfit_fires_when_validation_loss_runs_away_from_training_loss(trials):
    fired = verdict(trials, "overfit", "Overfit")
    assert fired["status"] == "IssuesFound"
    evidence = fired["evidence"]
    assert len(evidence["checks"]) == 3
    assert evidence["max_ratio"] > 0.1
    assert evidence["series"]["gap_ratio"][-1][1] == evidence["last_ratio"]
    assert len(evidence["series"]["train_loss"]) == 18 and len(evidence["series"]["valid_loss"]) == 3
    healthy = verdict(trials, "healthy", "Overfit")
    assert healthy["status"] == "NoIssuesFound" and healthy["evidence"]["max_ratio"] <= 0.1
    lenient = verdict(trials, "overfit", "Overfit", ratio_threshold=1e12)
    assert lenient["status"] == "NoIssuesFound"


def test_overtraining_fires_on_a_stalled_training_loss_and_on_a_rising_validation_loss(trials):
    stalled = verdict(trials, "stuck", "Overtraining")
    assert stalled["status"] == "IssuesFound"
    assert stalled["evidence"]["stalled_since"] == {"train": 5}
    rising = verdict(trials, "overfit", "Overtraining", patience_train=100, patience_validation=2)
    assert rising["status"] == "IssuesFound"
    assert list(rising["evidence"]["stalled_since"]) == ["validation"]
    assert verdict(trials, "healthy", "Overtraining")["status"] == "NoIssuesFound"


def test_poor_weight_initialization_fires_on_a_badly_scaled_layer(trials):
    fired = verdict(trials, "poor_init", "PoorWeightInitialization")
    assert fired["status"] == "IssuesFound"
    evidence = fired["evidence"]
    assert evidence["reasons"] == {"activation_variance_ratio": 0}
    assert evidence["max_variance_ratio"] > 100
    variances = evidence["series"]["activation_variance"]
    assert set(variances) == {"activation_input_variance/1", "activation_input_variance/3"}
    assert (
        variances["activation_input_variance/3"][0][1] > 100 * variances["activation_input_variance/1"][0][1]
    )
    assert len(evidence["series"]["variance_ratio"]) == 10
    healthy = verdict(trials, "healthy", "PoorWeightInitialization")
    assert healthy["status"] == "NoIssuesFound" and healthy["evidence"]["max_variance_ratio"] < 10


def test_a_rule_that_raises_is_an_error_verdict_and_the_others_still_run(trials, tmp_path):
    result = rules.evaluate_trial(
        trials["stuck"].path, str(tmp_path), {"Overfit": {"no_such_param": 1}, "Overtraining": {"delta": "x"}}
    )
    statuses = {v["name"]: v["status"] for v in result["rules"]}
    assert statuses["Overfit"] == "Error" and statuses["Overtraining"] == "Error"
    assert "no_such_param" in next(v for v in result["rules"] if v["name"] == "Overfit")["message"]
    assert statuses["LossNotDecreasing"] == "IssuesFound"
    assert (tmp_path / "verdicts.json").is_file()


def test_a_missing_trial_gives_error_verdicts_not_a_crash(tmp_path):
    result = rules.evaluate_trial(str(tmp_path / "absent"), str(tmp_path / "verdicts.json"))
    assert {v["status"] for v in result["rules"]} == {"Error"}
    assert "no trial" in result["rules"][0]["message"]
    assert result["issues_found"] is False


def test_cli_writes_verdicts_with_parameter_overrides(trials, tmp_path):
    out = tmp_path / "verdicts.json"
    overrides = json.dumps({"VanishingGradient": {"threshold": 1.0}})
    completed = subprocess.run(
        [sys.executable, "-m", "rules", trials["healthy"].path, str(out), "--params", overrides],
        cwd=TRAINING_CODE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "VanishingGradient: IssuesFound" in completed.stdout
    written = json.loads(out.read_text())
    assert written["rules"][0]["params"] == {"threshold": 1.0}
    assert written["issues_found"] is True
