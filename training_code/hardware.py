"""The device, numeric precision, memory format and thread count a training run uses, and why."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class HardwareError(Exception):
    """A requested device or precision that this machine cannot provide."""


def cpu_flags(cpuinfo_path: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(flags: set[str]) -> bool:
    """bf16 autocast only pays off with bf16 instructions; emulated bf16 (e.g. ml.m5) is slower than fp32."""
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def choose_precision(
    device_type: str,
    *,
    requested: str = "auto",
    hook_records: bool = False,
    cpu_native_bf16: bool = False,
    cuda_bf16: bool = False,
) -> tuple[str, str]:
    """(precision, reason). Pure: every fact about the machine comes in as an argument."""
    if requested not in PRECISIONS:
        raise HardwareError(f"unknown precision {requested!r}; choose one of: {', '.join(PRECISIONS)}")
    if hook_records:
        # smdebug's hook calls .numpy(), which raises on bf16 tensors.
        return "fp32", "the debugging hook records tensors and smdebug cannot save bf16"
    if requested != "auto":
        if requested == "fp16" and device_type != "cuda":
            raise HardwareError("fp16 autocast needs CUDA; on CPU choose one of: auto, fp32, bf16")
        if requested == "bf16" and device_type == "cuda" and not cuda_bf16:
            raise HardwareError("this GPU has no bf16 support; choose one of: auto, fp32, fp16")
        return requested, "requested"
    if device_type == "cuda":
        if cuda_bf16:
            return "bf16", "CUDA with bf16 support: bf16 autocast, no loss scaling needed"
        return "fp16", "CUDA without bf16: fp16 autocast with a gradient scaler"
    if cpu_native_bf16:
        return "bf16", f"CPU has native bf16 ({' or '.join(NATIVE_BF16_FLAGS)}): bf16 autocast"
    return "fp32", "CPU without native bf16: fp32 (emulated bf16 is slower)"


def job_cpu_count(environ: dict[str, str] | None = None) -> int:
    """The cores the job is given: SM_NUM_CPUS on SageMaker (and locally), else this process's affinity."""
    environ = dict(os.environ) if environ is None else environ
    value = environ.get("SM_NUM_CPUS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class Runtime:
    device: torch.device
    precision: str
    precision_reason: str
    channels_last: bool
    pin_memory: bool
    num_threads: int

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> dict:
        return {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "channels_last": self.channels_last,
            "pin_memory": self.pin_memory,
            "num_threads": self.num_threads,
        }


def detect_runtime(
    *,
    device: str = "auto",
    precision: str = "auto",
    hook_records: bool = False,
    num_cpus: int | None = None,
) -> Runtime:
    if device not in DEVICES:
        raise HardwareError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise HardwareError("--device cuda was requested but CUDA is not available; choose auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    torch_device = torch.device("cuda" if use_cuda else "cpu")
    num_threads = num_cpus or job_cpu_count()
    torch.set_num_threads(num_threads)
    chosen, reason = choose_precision(
        torch_device.type,
        requested=precision,
        hook_records=hook_records,
        cpu_native_bf16=cpu_has_native_bf16(cpu_flags()),
        cuda_bf16=use_cuda and torch.cuda.is_bf16_supported(),
    )
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(
        device=torch_device,
        precision=chosen,
        precision_reason=reason,
        # channels_last also helps oneDNN on CPU (measured here: resnet18 training 2-8% faster).
        channels_last=True,
        pin_memory=use_cuda,
        num_threads=num_threads,
    )
