"""SageMaker script-mode training: an ImageFolder dataset in, a served-as-is model artifact out."""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import checkpoints
import contracts
import data
import debugging
import evaluation
import hardware
import metrics
import presets
import profiler
from architectures import build_model, head_of
from contracts import artifact, datasets
from contracts import hyperparameters as contract

CODE_DIR = Path(__file__).resolve().parent
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
TRAINABLE = ("all", "last", "head")
CACHE_MODES = ("auto", "on", "off")
ON_OFF = {
    "on": True,
    "off": False,
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
}
# Hyperparameters that change how a run computes, not what it computes: a restarted job may differ in them
# and still resume its checkpoint.
PATH_KEYS = ("train", "valid", "test", "model_dir", "output_data_dir")
OPERATIONAL = ("workers", "cache", "device", "precision", "debug_hook", "hook_save_interval",
               "hook_activations", "profile", "checkpoint_dir", *PATH_KEYS)  # fmt: skip


class TrainingError(Exception):
    """A run that cannot proceed; the message says what to change."""


# --------------------------------------------------------------------------------------------- arguments


def _on_off(value: str) -> bool:
    key = str(value).strip().lower()
    if key not in ON_OFF:
        raise argparse.ArgumentTypeError(f"invalid value {value!r} (choose from 'on', 'off')")
    return ON_OFF[key]


def _auto_or(kind: type) -> Any:
    def parse(value: str) -> Any:
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            return kind(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"invalid value {value!r}: expected 'auto' or a {kind.__name__}"
            ) from e

    parse.__name__ = f"auto or {kind.__name__}"
    return parse


def _positive(kind: type) -> Any:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a {kind.__name__}") from e
        if number <= 0:
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: must be > 0")
        return number

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _contract(name: str) -> Any:
    """The argument type of a hyperparameter the pipeline sends: its contract's type, bounds and `auto`."""
    spec = contract.SPECS[name]

    def parse(value: str) -> Any:
        try:
            return spec.parse(value)
        except contract.InvalidHyperparameter as e:
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: {e}") from e

    parse.__name__ = spec.allowed()
    return parse


def _json_object(value: str) -> dict[str, dict[str, Any]]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"invalid JSON {value!r}: {e.msg}") from e
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise argparse.ArgumentTypeError(f"expected an object of objects by rule name, got {value!r}")
    return parsed


def _dashed(token: str) -> str:
    """`--batch_size` -> `--batch-size`: tuning tools and people spell hyperparameters both ways."""
    if not token.startswith("--") or token.startswith(("--sagemaker_", "--sagemaker-")):
        return token
    key, sep, value = token.partition("=")
    return key.replace("_", "-") + sep + value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # A job that dies on a bad hyperparameter should say which in SageMaker's FailureReason too.
        write_failure(os.environ.get("SM_OUTPUT_DATA_DIR"), f"invalid hyperparameters: {message}")
        super().error(message)


def get_args_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = _Parser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default="auto",
        choices=contract.SPECS[contract.MODEL].choices,
        help="backbone; auto: resnet50 with ImageNet weights, resnet18 from scratch",
    )
    model.add_argument(
        "--weights",
        default="imagenet",
        choices=contract.SPECS[contract.WEIGHTS].choices,
        help="start from ImageNet weights (downloaded) or from random initialisation",
    )
    model.add_argument(
        "--trainable",
        default="all",
        choices=TRAINABLE,
        help="which part trains: the whole network, the last block and head, or the head only",
    )
    model.add_argument(
        "--image-size",
        default="auto",
        type=_contract(contract.IMAGE_SIZE),
        help="square input side in px; auto: 224 with ImageNet weights, else the training "
        "images' median short side clamped to 32..224",
    )
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", default=20, type=_contract(contract.EPOCHS))
    optim.add_argument("--batch-size", default=64, type=_contract(contract.BATCH_SIZE))
    optim.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS)
    optim.add_argument(
        "--lr",
        default="auto",
        type=_contract(contract.LEARNING_RATE),
        help="peak learning rate of the head; auto depends on optimizer, weights and batch size",
    )
    optim.add_argument(
        "--backbone-lr-scale",
        default="auto",
        type=_auto_or(float),
        help="backbone lr = lr x this; auto: 0.1 when fine-tuning ImageNet weights, else 1",
    )
    optim.add_argument(
        "--weight-decay",
        default="auto",
        type=_contract(contract.WEIGHT_DECAY),
        help="auto: 0.05 for adamw, 1e-4 for sgd; never applied to biases and norm layers",
    )
    optim.add_argument("--momentum", default=0.9, type=float, help="sgd only (Nesterov)")
    optim.add_argument(
        "--schedule",
        default="cosine",
        choices=SCHEDULES,
        help="per-step lr schedule after warmup: cosine to zero, x0.1 at 50%% and 75%%, or flat",
    )
    optim.add_argument("--warmup-epochs", default=1.0, type=float, help="linear warmup length, in epochs")
    optim.add_argument("--label-smoothing", default=0.1, type=_contract(contract.LABEL_SMOOTHING))
    optim.add_argument("--augment", default="standard", choices=contract.SPECS[contract.AUGMENTATION].choices)
    optim.add_argument(
        "--hflip",
        default=True,
        type=_on_off,
        metavar="{on,off}",
        help="random horizontal flips (turn off for text, digits and other chiral classes)",
    )
    optim.add_argument(
        "--patience",
        default=5,
        type=int,
        help="stop after this many epochs without a better valid accuracy; 0 never stops",
    )
    optim.add_argument(
        "--min-delta", default=0.0, type=float, help="smallest valid accuracy gain that counts"
    )
    optim.add_argument("--seed", default=42, type=int)
    system = parser.add_argument_group("system")
    system.add_argument(
        "--workers",
        default="auto",
        type=_auto_or(int),
        help="DataLoader worker processes; auto: 0 on 1-2 cores, else cores-1 up to 8",
    )
    system.add_argument(
        "--cache",
        default="auto",
        choices=CACHE_MODES,
        help="keep decoded images in memory; auto: when they fit in min(2 GiB, 1/4 of RAM)",
    )
    system.add_argument("--device", default="auto", choices=hardware.DEVICES)
    system.add_argument(
        "--precision",
        default="auto",
        choices=hardware.PRECISIONS,
        help="auto: bf16/fp16 autocast on CUDA, bf16 on CPUs with native bf16, else fp32",
    )
    system.add_argument(
        "--debug-hook",
        default=False,
        type=_on_off,
        metavar="{on,off}",
        help="record tensors with smdebug (forces fp32) and evaluate the rules at the end",
    )
    system.add_argument("--hook-save-interval", default=10, type=_positive(int))
    system.add_argument(
        "--rule-params",
        default="{}",
        type=_json_object,
        help="JSON overrides of the rules' parameters by rule name, "
        'e.g. {"Overfit": {"ratio_threshold": 0.3}}',
    )
    system.add_argument("--hook-activations", default=True, type=_on_off, metavar="{on,off}")
    system.add_argument(
        "--profile",
        default=False,
        type=_on_off,
        metavar="{on,off}",
        help="sample CPU/memory/GPU use and time data, forward, backward and optimizer",
    )
    system.add_argument(
        "--checkpoint-dir",
        default="/opt/ml/checkpoints",
        help="per-epoch checkpoints; a restarted job resumes from the newest",
    )
    paths = parser.add_argument_group("paths (SageMaker sets these through the environment)")
    paths.add_argument("--train", default=env("SM_CHANNEL_TRAIN"))
    paths.add_argument("--valid", default=env("SM_CHANNEL_VALID"))
    paths.add_argument("--test", default=env("SM_CHANNEL_TEST"))
    paths.add_argument("--model-dir", default=env("SM_MODEL_DIR", "/opt/ml/model"))
    paths.add_argument("--output-data-dir", default=env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse hyperparameters, ignoring the platform's own `--sagemaker_*` keys."""
    parser = get_args_parser()
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = parser.parse_known_args([_dashed(token) for token in argv])
    leftovers = []
    skip_value = False
    for token in unknown:
        if skip_value:
            skip_value = False
            continue
        if token.startswith("--sagemaker_") or token.startswith("--sagemaker-"):
            skip_value = "=" not in token
            continue
        leftovers.append(token)
    if leftovers:
        parser.error(f"unrecognized arguments: {' '.join(leftovers)}")
    return args


def resolve_hyperparameters(args: argparse.Namespace, median_side: int | None = None) -> dict[str, Any]:
    """Every `auto` replaced by the value it stands for; these go in run.json and drive the run."""
    hp = {k: v for k, v in vars(args).items()}
    pretrained = hp["weights"] == "imagenet"
    if hp["model"] == "auto":
        hp["model"] = "resnet50" if pretrained else "resnet18"
    if hp["image_size"] == "auto":
        if pretrained or not median_side:
            hp["image_size"] = 224
        else:
            # From scratch, the data's own resolution: upscaling small images only adds compute.
            hp["image_size"] = int(min(224, max(32, 8 * math.ceil(median_side / 8))))
    if hp["image_size"] < 16:
        raise TrainingError(f"--image-size must be at least 16, got {hp['image_size']}")
    if hp["lr"] == "auto":
        if hp["optimizer"] == "adamw":
            hp["lr"] = 1e-3 if pretrained else 2e-3
        else:
            # The linear scaling rule from a base of 256 images per step.
            hp["lr"] = (0.04 if pretrained else 0.1) * hp["batch_size"] / 256
    if hp["backbone_lr_scale"] == "auto":
        hp["backbone_lr_scale"] = 0.1 if pretrained and hp["trainable"] != "head" else 1.0
    if hp["weight_decay"] == "auto":
        hp["weight_decay"] = 0.05 if hp["optimizer"] == "adamw" else 1e-4
    if not 0.0 <= hp["label_smoothing"] < 1.0:
        raise TrainingError(f"--label-smoothing must be in [0, 1), got {hp['label_smoothing']}")
    if hp["patience"] < 0:
        raise TrainingError(f"--patience must be >= 0, got {hp['patience']}")
    return hp


def default_workers(num_cpus: int, cached: bool) -> int:
    # On 1-2 cores a worker only competes with the training step for the same cores; cached images
    # need little work per item, so fewer workers suffice.
    if num_cpus <= 2:
        return 0
    return min(4 if cached else 8, num_cpus - 1)


# ------------------------------------------------------------------------------------------------- model


def last_block(model: nn.Module) -> list[nn.Module]:
    """The final feature stage, which `--trainable last` trains along with the head."""
    network: Any = model  # torchvision's models differ in attributes; each branch checks its own
    if hasattr(network, "layer4"):
        return [network.layer4]
    if isinstance(network, torchvision.models.ConvNeXt):
        return [network.features[-1], network.classifier]
    # MobileNetV3 and EfficientNet end with a 1x1 conv; the last inverted-residual stage sits before it.
    return [network.features[-2], network.features[-1], network.classifier]


def set_trainable(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """Freeze all but the chosen part; returns the head's parameters (they get the full learning rate)."""
    if trainable not in TRAINABLE:
        raise TrainingError(f"unknown --trainable {trainable!r}; choose one of: {', '.join(TRAINABLE)}")
    parent, attr = head_of(model)
    head: nn.Module = parent.get_submodule(attr)
    head_params = list(head.parameters())
    if trainable != "all":
        for param in model.parameters():
            param.requires_grad = False
        trained = [head] + (last_block(model) if trainable == "last" else [])
        for module in trained:
            for param in module.parameters():
                param.requires_grad = True
    return head_params


def train_mode(model: nn.Module) -> None:
    """model.train(), except that frozen BatchNorm layers keep their ImageNet running statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def build_optimizer(model: nn.Module, head_params: list[nn.Parameter], hp: dict) -> torch.optim.Optimizer:
    head_ids = {id(p) for p in head_params}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        # Decay on biases and norm scales only shrinks them toward zero for no regularising gain.
        decays = param.ndim > 1
        groups.setdefault((id(param) in head_ids, decays), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": hp["lr"] * (1.0 if is_head else hp["backbone_lr_scale"]),
            "weight_decay": hp["weight_decay"] if decays else 0.0,
        }
        for (is_head, decays), params in sorted(groups.items())
    ]
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(param_groups, lr=hp["lr"])
    return torch.optim.SGD(param_groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["momentum"] > 0)


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Linear warmup, then the schedule; a pure function of the step so resuming restores it exactly."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 0.1 ** sum(progress >= milestone for milestone in (0.5, 0.75))
    return 1.0


# ------------------------------------------------------------------------------------------ train / eval


class _NoTimer:
    def phase(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _timed_batches(loader: Any, timer: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    iterator = iter(loader)
    while True:
        with timer.phase("data"):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def _to_device(images: torch.Tensor, targets: torch.Tensor, runtime: hardware.Runtime):
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    images = images.to(runtime.device, non_blocking=True, memory_format=memory_format)
    return images, targets.to(runtime.device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: Any,
    runtime: hardware.Runtime,
    scaler: torch.amp.GradScaler,
    *,
    hook: Any = None,
    timer: Any = None,
) -> dict[str, float]:
    timer = timer or _NoTimer()
    train_mode(model)
    if hook is not None:
        hook.set_mode("train")
    loss_sum = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), device=runtime.device, dtype=torch.long)
    seen = 0
    started = time.perf_counter()
    for images, targets in _timed_batches(loader, timer):
        images, targets = _to_device(images, targets, runtime)
        with timer.phase("forward"), runtime.autocast():
            logits = model(images)
            loss = criterion(logits, targets)
        with timer.phase("backward"):
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
        with timer.phase("optimizer"):
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
        # Accumulate on the device: a .item() per step would stall a GPU pipeline.
        loss_sum += loss.detach().float() * targets.size(0)
        correct += (logits.argmax(1) == targets).sum()
        seen += targets.size(0)
    seconds = time.perf_counter() - started
    # Checked once per epoch: a per-step check would synchronise the GPU on every batch.
    if not torch.isfinite(loss_sum):
        raise TrainingError(
            f"the training loss became {loss_sum.item()}; lower --lr (now {scheduler.get_last_lr()})"
        )
    return {
        "loss": loss_sum.item() / max(seen, 1),
        "accuracy": correct.item() / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "img_s": seen / seconds if seconds > 0 else 0.0,
    }


def evaluate(
    model: nn.Module,
    criterion: nn.Module,
    loader: Any,
    runtime: hardware.Runtime,
    *,
    hook: Any = None,
    collect: bool = False,
) -> dict[str, Any]:
    """Loss and accuracy (the objective) on a split; with `collect`, also every target and prediction."""
    model.eval()
    if hook is not None:
        hook.set_mode("eval")
    loss_sum = 0.0
    targets_all: list[int] = []
    predictions_all: list[int] = []
    correct = 0
    seen = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for images, targets in loader:
            images, targets = _to_device(images, targets, runtime)
            with runtime.autocast():
                logits = model(images)
                loss = criterion(logits, targets)
            predictions = logits.argmax(1)
            loss_sum += loss.float().item() * targets.size(0)
            correct += int((predictions == targets).sum().item())
            seen += targets.size(0)
            if collect:
                targets_all += targets.tolist()
                predictions_all += predictions.tolist()
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "loss": loss_sum / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "img_s": seen / seconds if seconds > 0 else 0.0,
    }
    if collect:
        result["targets"] = targets_all
        result["predictions"] = predictions_all
    return result


# ------------------------------------------------------------------------------------------- artifacts


def find_inference_code(code_dir: Path = CODE_DIR) -> Path:
    """`inference_code/` beside train.py (the sourcedir tarball) or beside training_code/ (the repository)."""
    for candidate in (code_dir / "inference_code", code_dir.parent / "inference_code"):
        if (candidate / "inference.py").is_file():
            return candidate
    raise TrainingError(
        f"inference_code/inference.py not found beside {code_dir} or its parent; the model artifact "
        "needs it (package training_code with an inference_code/ folder)"
    )


def code_version(code_dir: Path, inference_dir: Path) -> str:
    """A hash of the training, inference and contracts code, so a model names the exact code that made it."""
    digest = hashlib.sha256()
    for folder in (code_dir, inference_dir, Path(contracts.__file__).parent):
        for path in sorted(folder.glob("*")):
            if path.is_file() and path.suffix in (".py", ".txt"):
                digest.update(f"{folder.name}/{path.name}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_model_artifact(
    model_dir: Path,
    *,
    state_dict: dict[str, torch.Tensor],
    model_config: dict,
    labels: list[str],
    evaluation_result: dict,
    run_info: dict,
    inference_dir: Path,
    code_dir: Path = CODE_DIR,
) -> None:
    """Exactly the files docs/contracts.md lists: the tarball serves as is, with no repacking."""
    model_dir.mkdir(parents=True, exist_ok=True)
    # Plain contiguous fp32 tensors: channels_last strides would otherwise travel into the artifact.
    plain = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    torch.save(plain, model_dir / artifact.WEIGHTS)
    _write_json(model_dir / artifact.CONFIG, model_config)
    _write_json(model_dir / artifact.LABELS, labels)
    _write_json(model_dir / artifact.EVALUATION, evaluation_result)
    _write_json(model_dir / artifact.RUN_INFO, run_info)
    code = model_dir / artifact.CODE_DIR
    code.mkdir(exist_ok=True)
    shutil.copyfile(inference_dir / artifact.INFERENCE_ENTRY, code / artifact.INFERENCE_ENTRY)
    for module in artifact.SERVING_TRAINING_MODULES:
        shutil.copyfile(code_dir / module, code / module)
    # The contracts package this job imported (the sourcedir's copy on SageMaker), byte for byte.
    shutil.rmtree(code / artifact.CONTRACTS_PACKAGE, ignore_errors=True)
    shutil.copytree(
        Path(contracts.__file__).parent,
        code / artifact.CONTRACTS_PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    requirements = inference_dir / artifact.INFERENCE_REQUIREMENTS
    if requirements.is_file():
        shutil.copyfile(requirements, code / artifact.INFERENCE_REQUIREMENTS)
    else:
        (code / artifact.INFERENCE_REQUIREMENTS).write_text("")


def write_failure(output_data_dir: str | None, message: str) -> None:
    """SageMaker reports /opt/ml/output/failure as the job's FailureReason."""
    if not output_data_dir:
        return
    with contextlib.suppress(OSError):
        path = Path(output_data_dir).parent / "failure"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:1024])


# ------------------------------------------------------------------------------------------------ main


def _usable_checkpoint_dir(path: str | None) -> Path | None:
    if not path:
        return None
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        print(f"checkpoints off: cannot write to {directory} ({e})", flush=True)
        return None
    return directory


def _fingerprint(hp: dict, dataset_hash: str) -> str:
    relevant = {k: v for k, v in sorted(hp.items()) if k not in OPERATIONAL}
    return hashlib.sha256(json.dumps([relevant, dataset_hash], default=str).encode()).hexdigest()[:16]


def _load_splits(args: argparse.Namespace) -> tuple[list[data.Split], str]:
    if not args.train or not args.valid:
        raise data.MissingSplitError(
            "training needs the train and valid channels: set SM_CHANNEL_TRAIN and SM_CHANNEL_VALID "
            "(or pass --train and --valid)"
        )
    splits = [data.scan_split(args.train, "train"), data.scan_split(args.valid, "valid")]
    if args.test:
        splits.append(data.scan_split(args.test, "test"))
    data.check_same_classes(splits)
    files = [entry for split in splits for entry in data.inspect_split(split)]
    return splits, datasets.dataset_hash(files)


@dataclass
class Splits:
    """The scanned channels, their content hash, and whether their decoded images stay in memory."""

    train: data.Split
    valid: data.Split
    test: data.Split | None
    dataset_hash: str
    cached: bool

    @property
    def labels(self) -> list[str]:
        return self.train.classes


@dataclass
class Training:
    """The model on its device and everything that updates it; a checkpoint saves each one's state."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


@dataclass
class Progress:
    """Where the epochs stand: a checkpoint saves it, a resumed run starts from it."""

    best_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(
        default_factory=lambda: {"epoch": 0, "valid_accuracy": -1.0, "valid_loss": math.inf}
    )
    stale_epochs: int = 0
    next_epoch: int = 1
    stopped_early: bool = False
    resumed_from: str | None = None


def load_data(args: argparse.Namespace) -> tuple[Splits, dict[str, Any]]:
    """Scan and check the channels, and resolve the hyperparameters that follow from the data."""
    splits, dataset_hash = _load_splits(args)
    train_split, valid_split = splits[0], splits[1]
    test_split = splits[2] if len(splits) > 2 else None
    hp = resolve_hyperparameters(args, data.median_short_side(train_split))
    found = Splits(train_split, valid_split, test_split, dataset_hash, data.should_cache(args.cache, splits))
    print(
        f"data: {len(found.labels)} classes; train {len(train_split)}, valid {len(valid_split)}, "
        f"test {len(test_split) if test_split else 'none'} images; "
        f"{'decoded in memory' if found.cached else 'decoded per step'} "
        f"({data.decoded_bytes(splits) / 1e6:.1f} MB); sha256 {dataset_hash[:16]}",
        flush=True,
    )
    return found, hp


def create_debug_hook(args: argparse.Namespace, output_dir: Path) -> debugging.DebugHook | None:
    """The smdebug hook when asked for; None, with the reason printed, when smdebug cannot be imported."""
    if not args.debug_hook:
        return None
    return debugging.create_hook(
        str(output_dir / "tensors"),
        save_interval=args.hook_save_interval,
        include_activations=args.hook_activations,
    )


def set_up_runtime(
    args: argparse.Namespace, hp: dict[str, Any], cached: bool, hook: debugging.DebugHook | None
) -> hardware.Runtime:
    """Device and precision (fp32 while the hook records), and the worker count resolved into `hp`."""
    runtime = hardware.detect_runtime(
        device=args.device, precision=args.precision, hook_records=hook is not None
    )
    hp["workers"] = (
        default_workers(runtime.num_threads, cached) if args.workers == "auto" else max(0, int(args.workers))
    )
    print(f"runtime: {json.dumps(runtime.describe())}", flush=True)
    print(f"hyperparameters: {json.dumps({k: v for k, v in hp.items() if k not in PATH_KEYS})}", flush=True)
    return runtime


def start_profiling(enabled: bool, runtime: hardware.Runtime) -> tuple[profiler.SystemSampler | None, Any]:
    """A running system sampler and a phase timer, or no sampler and a timer that records nothing."""
    if not enabled:
        return None, _NoTimer()
    sampler = profiler.SystemSampler(interval_s=1.0)
    # Kernels run asynchronously on a GPU: without a sync each phase would be charged to the next one.
    timer = profiler.PhaseTimer(cuda_sync=runtime.device.type == "cuda")
    sampler.start()
    return sampler, timer


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _loader_options(hp: dict[str, Any], runtime: hardware.Runtime) -> dict[str, Any]:
    return {"workers": hp["workers"], "pin_memory": runtime.pin_memory}


def evaluation_loader(
    split: data.Split, cached: bool, hp: dict[str, Any], runtime: hardware.Runtime
) -> DataLoader:
    """A split in a fixed order with the eval transform, applied once up front when the result fits memory."""
    image_size = hp["image_size"]
    dataset = data.precompute(
        data.ImageFolderDataset(split, presets.eval_transform(image_size), cache=cached), image_size
    )
    return data.make_loader(
        dataset, batch_size=max(hp["batch_size"], 128), shuffle=False, **_loader_options(hp, runtime)
    )


def build_loaders(
    found: Splits, hp: dict[str, Any], runtime: hardware.Runtime
) -> tuple[DataLoader, DataLoader]:
    """The shuffled training loader and the validation loader."""
    train_set = data.ImageFolderDataset(
        found.train, presets.train_transform(hp["image_size"], hp["augment"], hp["hflip"]), cache=found.cached
    )
    valid_loader = evaluation_loader(found.valid, found.cached, hp, runtime)
    # A last batch of one sample breaks BatchNorm in training mode; dropping a partial batch is harmless.
    train_loader = data.make_loader(
        train_set, batch_size=hp["batch_size"], shuffle=True, seed=hp["seed"],
        drop_last=len(train_set) > hp["batch_size"], **_loader_options(hp, runtime),
    )  # fmt: skip
    return train_loader, valid_loader


def build_training(
    hp: dict[str, Any],
    num_classes: int,
    runtime: hardware.Runtime,
    steps_per_epoch: int,
    hook: debugging.DebugHook | None,
) -> Training:
    """The model with its trainable part chosen, on its device, with its loss, optimizer and schedule."""
    try:
        model = build_model(hp["model"], num_classes, hp["weights"])
    except Exception as e:
        if hp["weights"] == "imagenet":
            raise TrainingError(
                f"cannot load ImageNet weights for {hp['model']} ({e}); "
                "without network access use --weights none"
            ) from e
        raise
    head_params = set_trainable(model, hp["trainable"])
    if hp["trainable"] != "all" and hp["weights"] == "none":
        print(
            "note: a frozen, randomly initialised backbone learns little; prefer --trainable all", flush=True
        )
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(runtime.device)
    criterion = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    optimizer = build_optimizer(model, head_params, hp)
    total_steps = steps_per_epoch * hp["epochs"]
    warmup_steps = min(round(hp["warmup_epochs"] * steps_per_epoch), total_steps // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(
            step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=hp["schedule"]
        ),
    )
    if hook is not None:
        hook.attach(model, criterion)
    return Training(model, criterion, optimizer, scheduler, runtime.grad_scaler())


def resume(checkpoint_dir: Path | None, fingerprint: str, training: Training) -> Progress:
    """A fresh start, or the state of the newest checkpoint when it belongs to this run and dataset."""
    progress = Progress(best_state=copy.deepcopy(training.model.state_dict()))
    if checkpoint_dir is None:
        return progress
    found = checkpoints.latest_checkpoint(checkpoint_dir)
    if found is None:
        return progress
    path, state = found
    if state.get("fingerprint") != fingerprint:
        print(f"checkpoint: ignoring {path}: it belongs to a different run or dataset", flush=True)
        return progress
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    training.scaler.load_state_dict(state["scaler"])
    checkpoints.restore_rng_state(state["rng"])
    progress.history = list(state["history"])
    progress.best = dict(state["best"])
    progress.stale_epochs = int(state["stale_epochs"])
    progress.stopped_early = bool(state["stopped_early"])
    progress.next_epoch = int(state["epoch"]) + 1
    saved_best = checkpoints.load_best(checkpoint_dir)
    if saved_best is not None:
        progress.best_state = saved_best["model"]
    else:
        print("checkpoint: best weights missing; the resumed weights stand in for them", flush=True)
        progress.best_state = copy.deepcopy(training.model.state_dict())
    progress.resumed_from = str(path)
    print(f"checkpoint: resumed from {path} (epoch {state['epoch']} done)", flush=True)
    return progress


def improves(record: dict[str, Any], best: dict[str, Any], min_delta: float) -> bool:
    """A valid accuracy better by more than `min_delta`, or as good at a lower valid loss."""
    return record["valid_accuracy"] > best["valid_accuracy"] + min_delta or (
        record["valid_accuracy"] >= best["valid_accuracy"] and record["valid_loss"] < best["valid_loss"]
    )


def stops_early(stale_epochs: int, patience: int, epoch: int, epochs: int) -> bool:
    """Patience ran out before the last epoch (patience 0 never stops)."""
    return bool(patience) and stale_epochs >= patience and epoch < epochs


def fit(
    training: Training,
    train_loader: DataLoader,
    valid_loader: DataLoader,
    progress: Progress,
    hp: dict[str, Any],
    runtime: hardware.Runtime,
    *,
    checkpoint_dir: Path | None,
    fingerprint: str,
    hook: debugging.DebugHook | None,
    timer: Any,
) -> float:
    """The epochs from `progress.next_epoch` on, checkpointed after each; returns the seconds they took."""
    model = training.model
    started = time.perf_counter()
    for epoch in range(progress.next_epoch, hp["epochs"] + 1):
        if progress.stopped_early:
            break
        # Reseeded per epoch, so a resumed run shuffles exactly as an uninterrupted one would.
        train_loader.generator.manual_seed(hp["seed"] * 1000 + epoch)
        lr = training.scheduler.get_last_lr()[-1]
        train_stats = train_one_epoch(
            model, training.criterion, training.optimizer, training.scheduler, train_loader, runtime,
            training.scaler, hook=hook, timer=timer,
        )  # fmt: skip
        valid_stats = evaluate(model, training.criterion, valid_loader, runtime, hook=hook)
        record = {
            "epoch": epoch,
            "train_loss": train_stats["loss"],
            "train_accuracy": train_stats["accuracy"],
            "valid_loss": valid_stats["loss"],
            "valid_accuracy": valid_stats["accuracy"],
            "lr": lr,
            "epoch_seconds": train_stats["seconds"] + valid_stats["seconds"],
            "train_img_s": train_stats["img_s"],
            "valid_img_s": valid_stats["img_s"],
        }
        progress.history.append(record)
        print(metrics.format_epoch_line(**record), flush=True)
        if improves(record, progress.best, hp["min_delta"]):
            progress.best = {k: record[k] for k in ("epoch", "valid_accuracy", "valid_loss")}
            progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            progress.stale_epochs = 0
            if checkpoint_dir is not None:
                checkpoints.save_best(checkpoint_dir, progress.best_state, epoch, progress.best)
        else:
            progress.stale_epochs += 1
        if stops_early(progress.stale_epochs, hp["patience"], epoch, hp["epochs"]):
            progress.stopped_early = True
            print(
                f"early stopping: valid_accuracy has not improved for {progress.stale_epochs} epochs "
                f"(best {progress.best['valid_accuracy']:.4f} at epoch {progress.best['epoch']})",
                flush=True,
            )
        if checkpoint_dir is not None:
            checkpoints.save_checkpoint(
                checkpoint_dir, epoch, checkpoint_state(training, progress, fingerprint)
            )
    return time.perf_counter() - started


def checkpoint_state(training: Training, progress: Progress, fingerprint: str) -> dict[str, Any]:
    """What `resume` needs to continue exactly where this epoch ended."""
    return {
        "fingerprint": fingerprint,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "scaler": training.scaler.state_dict(),
        "rng": checkpoints.capture_rng_state(),
        "history": progress.history,
        "best": progress.best,
        "stale_epochs": progress.stale_epochs,
        "stopped_early": progress.stopped_early,
    }


def final_evaluation(
    training: Training,
    best_state: dict[str, torch.Tensor],
    found: Splits,
    hp: dict[str, Any],
    runtime: hardware.Runtime,
    hook: debugging.DebugHook | None,
) -> tuple[data.Split, dict[str, Any], dict[str, Any]]:
    """The best weights scored on the test split (the valid split without one): split, stats, report."""
    training.model.load_state_dict(best_state)
    if found.test is not None:
        eval_split = found.test
    else:
        print("note: no test channel; evaluation.json scores the valid split", flush=True)
        eval_split = found.valid
    eval_loader = evaluation_loader(eval_split, found.cached, hp, runtime)
    if hook is not None:
        hook.close()
    test_stats = evaluate(training.model, training.criterion, eval_loader, runtime, collect=True)
    report = evaluation.evaluation_report(found.labels, test_stats["targets"], test_stats["predictions"])
    print(metrics.format_test_line(report["accuracy"]), flush=True)
    return eval_split, test_stats, report


def throughput_summary(
    history: list[dict[str, Any]], test_stats: dict[str, Any], train_seconds: float, started: float
) -> dict[str, float]:
    return {
        "train_img_s": _mean(r["train_img_s"] for r in history),
        "valid_img_s": _mean(r["valid_img_s"] for r in history),
        "test_img_s": test_stats["img_s"],
        "train_seconds": train_seconds,
        "seconds_per_epoch": _mean(r["epoch_seconds"] for r in history),
        "total_seconds": time.perf_counter() - started,
    }


def write_outputs(
    args: argparse.Namespace,
    *,
    hp: dict[str, Any],
    found: Splits,
    runtime: hardware.Runtime,
    progress: Progress,
    report: dict[str, Any],
    eval_split: data.Split,
    throughput: dict[str, float],
    inference_dir: Path,
) -> dict[str, Any]:
    """The model artifact, then evaluation.json, run.json and metrics.json beside it; returns run.json's
    content."""
    model_config = {
        "architecture": hp["model"],
        "num_classes": len(found.labels),
        "image_size": hp["image_size"],
        "mean": list(presets.IMAGENET_MEAN),
        "std": list(presets.IMAGENET_STD),
        "precision": runtime.precision,
    }
    run_info = {
        "seed": hp["seed"],
        "dataset_hash": found.dataset_hash,
        "code_version": code_version(CODE_DIR, inference_dir),
        "hyperparameters": {k: v for k, v in hp.items() if k not in PATH_KEYS},
        "precision": runtime.precision,
        "device": str(runtime.device),
        "runtime": runtime.describe(),
        "data": {
            "classes": len(found.labels),
            "train_images": len(found.train),
            "valid_images": len(found.valid),
            "test_images": len(found.test) if found.test else 0,
            "cached": found.cached,
            "evaluation_split": eval_split.name,
        },
        "best_epoch": progress.best["epoch"],
        "epochs_run": len(progress.history),
        "stopped_early": progress.stopped_early,
        "resumed_from": progress.resumed_from,
        "throughput": throughput,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        },
    }
    write_model_artifact(
        Path(args.model_dir),
        state_dict=progress.best_state,
        model_config=model_config,
        labels=found.labels,
        evaluation_result=report,
        run_info=run_info,
        inference_dir=inference_dir,
    )
    output_dir = Path(args.output_data_dir)
    _write_json(output_dir / artifact.EVALUATION, report)
    # run.json in output.tar.gz too: reports read the small output, not the model, to name the dataset.
    _write_json(output_dir / artifact.RUN_INFO, run_info)
    metrics_summary = {
        "objective": {"name": metrics.OBJECTIVE_METRIC, "type": metrics.OBJECTIVE_TYPE},
        "epochs": progress.history,
        "best": progress.best,
        "stopped_early": progress.stopped_early,
        "test_accuracy": report["accuracy"],
        "evaluation_split": eval_split.name,
        "throughput": throughput,
    }
    _write_json(output_dir / "metrics.json", metrics_summary)
    return run_info


def finish_profiling(
    sampler: profiler.SystemSampler,
    timer: Any,
    output_dir: Path,
    runtime: hardware.Runtime,
    throughput: dict[str, float],
) -> None:
    sampler.stop()
    extra = {"precision": runtime.precision, "device": str(runtime.device), "throughput": throughput}
    profiler.write_profile(str(output_dir / "profiler" / "profile.json"), sampler, timer, extra)


def judge_rules(
    args: argparse.Namespace, output_dir: Path, train_steps: int, valid_steps: int, epochs_run: int
) -> None:
    """The built-in rules over the recorded tensors, written to rules/verdicts.json."""
    # Imported here, not at the top: importing rules imports smdebug, which logs a line as it loads, and only
    # a run that recorded tensors has anything to judge. rules imports without smdebug too.
    import rules

    params = rule_parameters(train_steps, valid_steps, epochs_run, args.patience, args.rule_params)
    verdicts = rules.evaluate_trial(
        str(output_dir / "tensors"), str(output_dir / "rules" / "verdicts.json"), params
    )
    print(f"rules: issues_found={verdicts.get('issues_found')}", flush=True)


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    inference_dir = find_inference_code()
    found, hp = load_data(args)
    output_dir = Path(args.output_data_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    hook = create_debug_hook(args, output_dir)
    runtime = set_up_runtime(args, hp, found.cached, hook)
    sampler, timer = start_profiling(args.profile, runtime)
    seed_everything(hp["seed"])
    train_loader, valid_loader = build_loaders(found, hp, runtime)
    training = build_training(hp, len(found.labels), runtime, len(train_loader), hook)

    fingerprint = _fingerprint(hp, found.dataset_hash)
    checkpoint_dir = _usable_checkpoint_dir(args.checkpoint_dir)
    progress = resume(checkpoint_dir, fingerprint, training)
    train_seconds = fit(
        training, train_loader, valid_loader, progress, hp, runtime,
        checkpoint_dir=checkpoint_dir, fingerprint=fingerprint, hook=hook, timer=timer,
    )  # fmt: skip

    eval_split, test_stats, report = final_evaluation(training, progress.best_state, found, hp, runtime, hook)
    throughput = throughput_summary(progress.history, test_stats, train_seconds, started)
    run_info = write_outputs(
        args, hp=hp, found=found, runtime=runtime, progress=progress, report=report,
        eval_split=eval_split, throughput=throughput, inference_dir=inference_dir,
    )  # fmt: skip
    if sampler is not None:
        finish_profiling(sampler, timer, output_dir, runtime, throughput)
    if hook is not None:
        judge_rules(args, output_dir, len(train_loader), len(valid_loader), len(progress.history))

    print(
        f"done: test accuracy {report['accuracy']:.4f} ({eval_split.name}), "
        f"best epoch {progress.best['epoch']}, {len(progress.history)} epochs in {train_seconds:.1f}s, "
        f"train {throughput['train_img_s']:.0f} img/s, eval {throughput['valid_img_s']:.0f} img/s, "
        f"precision {runtime.precision}; model in {args.model_dir}",
        flush=True,
    )
    return {
        "accuracy": report["accuracy"],
        "best": progress.best,
        "history": progress.history,
        "run": run_info,
    }


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def rule_parameters(
    train_steps: int,
    valid_steps: int,
    epochs: int,
    patience: int,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The built-in rules' parameters restated in this run's steps.

    AWS's defaults count steps saved at SageMaker's default interval, 500 training steps apart: "10 steps"
    spans thousands of batches. Our hook saves the loss at every batch, so the same numbers would judge a
    few noisy batches and fire on any model that warms up or converges. So LossNotDecreasing compares a
    batch with one half a run earlier; Overtraining waits longer than early stopping would (it fires only
    when training went on past convergence); Overfit judges the second half of training, where the
    deployed weights come from; PoorWeightInitialization looks at the whole first epoch.
    """
    train_steps, valid_steps, epochs = max(1, train_steps), max(1, valid_steps), max(1, epochs)
    window = patience + 1 if patience > 0 else max(2, epochs // 2)
    params: dict[str, dict[str, Any]] = {
        "LossNotDecreasing": {"num_steps": max(train_steps, epochs * train_steps // 2)},
        "Overtraining": {
            "patience_train": window * train_steps,
            "patience_validation": window * valid_steps,
            "delta": 0.0,
        },
        "Overfit": {"start_step": (train_steps + valid_steps) * (epochs // 2), "patience": 2},
        # Its loss check looks for new minima over the first steps; during warmup the first handful of
        # batches barely move the weights, so look at the first epoch with half of it as patience.
        "PoorWeightInitialization": {"steps": max(10, train_steps), "patience": max(5, train_steps // 2)},
    }
    for rule, values in (overrides or {}).items():
        params.setdefault(rule, {}).update(values)
    return params


def run(argv: list[str] | None = None) -> int:
    """Entry point: typed failures print one clear line, go to SageMaker's failure file, and exit 1; a
    hyperparameter outside its bounds (contracts.hyperparameters) exits 2, its reason in the failure file."""
    refused = io.StringIO()
    try:
        with contextlib.redirect_stderr(refused):
            args = parse_args(argv)
    except SystemExit as e:
        sys.stderr.write(refused.getvalue())
        if e.code in (0, None):
            raise
        lines = refused.getvalue().strip().splitlines()
        write_failure(os.environ.get("SM_OUTPUT_DATA_DIR"), lines[-1] if lines else "invalid hyperparameters")
        return 2
    sys.stderr.write(refused.getvalue())
    try:
        main(args)
    except (data.DatasetError, TrainingError, hardware.HardwareError, checkpoints.CheckpointError) as e:
        message = f"{type(e).__name__}: {e}"
        print(f"error: {message}", file=sys.stderr, flush=True)
        write_failure(args.output_data_dir, message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
