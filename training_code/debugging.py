"""The smdebug hook that records losses, weights, gradients and activation statistics for the rules."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# SageMaker writes the hook configuration here when a training job carries DebugHookConfig.
MANAGED_CONFIG_PATH = "/opt/ml/input/config/debughookconfig.json"
MANAGED_CONFIG_ENV = "SM_DEBUG_HOOK_CONFIG"

# Our own collection: one scalar per activation layer and step, the variance of the activation's input.
ACTIVATION_VARIANCE_COLLECTION = "activation_input_variance"
ACTIVATION_VARIANCE_PREFIX = "activation_input_variance/"

# The first steps are saved every step, whatever the interval: PoorWeightInitialization looks at them.
EARLY_STEPS = 10

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
)

# Reductions are enough for every rule and keep a ResNet-50 trial at kilobytes per step, not 200 MB.
WEIGHT_REDUCTIONS = ["mean", "min", "max", "variance"]
WEIGHT_ABS_REDUCTIONS = ["mean"]
WEIGHT_NORMS = ["l2"]

_MODES = ("train", "eval")


def managed_config_path() -> str | None:
    """The hook configuration SageMaker passed, if any (env var first, so local tests can point at one)."""
    from_env = os.environ.get(MANAGED_CONFIG_ENV)
    if from_env:
        return from_env
    return MANAGED_CONFIG_PATH if Path(MANAGED_CONFIG_PATH).is_file() else None


class DebugHook:
    """What the training script sees: attach, switch modes, close. Wraps one smdebug PyTorch hook."""

    def __init__(self, smdebug_hook: Any, modes: Any, *, include_activations: bool) -> None:
        self.smdebug_hook = smdebug_hook
        self._modes = modes
        self._include_activations = include_activations
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.out_dir: str = smdebug_hook.out_dir
        self.activation_layers: list[str] = []

    def attach(self, model: nn.Module, criterion: nn.Module) -> None:
        self.smdebug_hook.register_module(model)
        if isinstance(criterion, nn.modules.loss._Loss):
            self.smdebug_hook.register_loss(criterion)
        if self._include_activations:
            for name, module in model.named_modules():
                if isinstance(module, ACTIVATION_TYPES):
                    self.activation_layers.append(name)
                    self._handles.append(module.register_forward_pre_hook(self._activation_recorder(name)))

    def set_mode(self, mode: str) -> None:
        if mode not in _MODES:
            raise ValueError(f"unknown hook mode {mode!r}; allowed: {', '.join(_MODES)}")
        self.smdebug_hook.set_mode(self._modes.TRAIN if mode == "train" else self._modes.EVAL)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.smdebug_hook.close()

    def _activation_recorder(self, layer: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        tensor_name = ACTIVATION_VARIANCE_PREFIX + layer

        # A pre-hook, because in-place activations (torchvision's ReLU(inplace=True)) have overwritten their
        # input by the time a forward hook sees it.
        def record(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if not inputs or not isinstance(inputs[0], torch.Tensor) or not self._saving_activations_now():
                return
            variance = inputs[0].detach().float().var()
            self.smdebug_hook.save_tensor(tensor_name, variance, ACTIVATION_VARIANCE_COLLECTION)

        return record

    def _saving_activations_now(self) -> bool:
        hook = self.smdebug_hook
        # A custom tensor is written by the step's writer; without one smdebug would fail and disable itself.
        if hook.writer is None:
            return False
        collection = hook.collection_manager.get(ACTIVATION_VARIANCE_COLLECTION, create=False)
        if collection is None:
            return False
        return bool(collection.save_config.should_save_step(hook.mode, hook.mode_steps[hook.mode]))


def _hook_class() -> Any:
    from smdebug.pytorch import Hook

    class Fp32Hook(Hook):
        """smdebug's `.numpy()` raises on bf16/fp16; cast first so a stray half tensor is still saved."""

        @staticmethod
        def _make_numpy_array(tensor_value: Any) -> Any:
            if isinstance(tensor_value, torch.Tensor) and tensor_value.dtype in (
                torch.bfloat16,
                torch.float16,
            ):
                tensor_value = tensor_value.float()
            return Hook._make_numpy_array(tensor_value)

    return Fp32Hook


def _save_config(save_interval: int, mode_keys: Any, save_config_cls: Any, save_config_mode_cls: Any) -> Any:
    early = list(range(EARLY_STEPS))
    per_mode = save_config_mode_cls(save_interval=save_interval, save_steps=early)
    return save_config_cls(mode_save_configs={mode: per_mode for mode in mode_keys})


def create_hook(
    out_dir: str, *, save_interval: int = 10, include_activations: bool = True
) -> DebugHook | None:
    """An smdebug hook writing a trial to `out_dir`, or None (with a printed reason) when smdebug is absent.

    Train in fp32 while it records: smdebug converts tensors with `.numpy()`, which raises on bf16. The hook
    casts half tensors as a safety net, but bf16 statistics are not what the rules' thresholds assume.
    """
    if save_interval < 1:
        raise ValueError(f"save_interval must be >= 1, got {save_interval}")
    try:
        import smdebug.pytorch  # noqa: F401
    except ImportError as e:
        print(f"debugging hook off: smdebug cannot be imported ({e}); training continues without tensors")
        return None

    try:
        return _create(out_dir, save_interval, include_activations)
    except Exception as e:  # a broken hook must not cost the training run
        print(f"debugging hook off: {type(e).__name__}: {e}; training continues without tensors")
        return None


def _set_aside_finished_trial(out_dir: str) -> None:
    """smdebug refuses a folder that holds a finished trial; keep the old one beside the new run's."""
    folder = Path(out_dir)
    if not (folder / "training_job_end.ts").exists():
        return  # empty, absent, or an interrupted run of this job that smdebug continues
    previous = folder.with_name(folder.name + "-previous")
    if previous.exists():
        shutil.rmtree(previous)
    folder.rename(previous)
    print(f"debugging hook: {out_dir} held a finished trial; moved it to {previous}")


def _create(out_dir: str, save_interval: int, include_activations: bool) -> DebugHook:
    from smdebug import modes
    from smdebug.core.collection import CollectionKeys
    from smdebug.core.modes import ModeKeys
    from smdebug.core.reduction_config import ReductionConfig
    from smdebug.core.save_config import SaveConfig, SaveConfigMode

    hook_cls = _hook_class()
    config_path = managed_config_path()
    if config_path is not None:
        # SageMaker decides out_dir, collections and intervals; we only add the activation statistics.
        smdebug_hook = hook_cls.create_from_json_file(config_path)
        print(f"debugging hook: managed configuration from {config_path}, tensors to {smdebug_hook.out_dir}")
    else:
        _set_aside_finished_trial(out_dir)
        smdebug_hook = hook_cls(
            out_dir=out_dir,
            save_config=_save_config(save_interval, list(ModeKeys), SaveConfig, SaveConfigMode),
            include_collections=[
                CollectionKeys.LOSSES,
                CollectionKeys.WEIGHTS,
                CollectionKeys.BIASES,
                CollectionKeys.GRADIENTS,
            ],
        )
        reductions = ReductionConfig(
            reductions=WEIGHT_REDUCTIONS, abs_reductions=WEIGHT_ABS_REDUCTIONS, norms=WEIGHT_NORMS
        )
        for key in (CollectionKeys.WEIGHTS, CollectionKeys.BIASES, CollectionKeys.GRADIENTS):
            smdebug_hook.get_collection(key).reduction_config = reductions
        # Losses are scalars: every step, so Overfit and LossNotDecreasing see whole curves.
        smdebug_hook.get_collection(CollectionKeys.LOSSES).save_config = SaveConfig(save_interval=1)

    if include_activations:
        collection = smdebug_hook.get_collection(ACTIVATION_VARIANCE_COLLECTION)
        collection.include(ACTIVATION_VARIANCE_PREFIX)
        collection.save_config = _save_config(save_interval, list(ModeKeys), SaveConfig, SaveConfigMode)
        if ACTIVATION_VARIANCE_COLLECTION not in smdebug_hook.include_collections:
            smdebug_hook.include_collections.append(ACTIVATION_VARIANCE_COLLECTION)
    return DebugHook(smdebug_hook, modes, include_activations=include_activations)
