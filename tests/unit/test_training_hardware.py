"""Precision: AMP on CUDA, bf16 on CPUs with native bf16, else fp32, and fp32 while the hook records."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training_code"))
import hardware

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("device", "kwargs", "expected"),
    [
        ("cpu", {"cpu_native_bf16": True}, "bf16"),
        ("cpu", {"cpu_native_bf16": False}, "fp32"),
        ("cpu", {"cpu_native_bf16": True, "hook_records": True}, "fp32"),
        ("cuda", {"cuda_bf16": True}, "bf16"),
        ("cuda", {"cuda_bf16": False}, "fp16"),
        ("cuda", {"cuda_bf16": True, "hook_records": True}, "fp32"),
        ("cpu", {"requested": "fp32", "cpu_native_bf16": True}, "fp32"),
        ("cpu", {"requested": "bf16", "cpu_native_bf16": False}, "bf16"),
        ("cpu", {"requested": "bf16", "hook_records": True}, "fp32"),
    ],
)
def test_choose_precision(device, kwargs, expected):
    precision, reason = hardware.choose_precision(device, **kwargs)
    assert precision == expected
    assert reason


def test_impossible_requests_fail_with_the_alternatives():
    with pytest.raises(hardware.HardwareError, match="auto, fp32, bf16"):
        hardware.choose_precision("cpu", requested="fp16")
    with pytest.raises(hardware.HardwareError, match="auto, fp32, fp16"):
        hardware.choose_precision("cuda", requested="bf16", cuda_bf16=False)
    with pytest.raises(hardware.HardwareError, match="auto, fp32, bf16, fp16"):
        hardware.choose_precision("cpu", requested="half")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    flags = hardware.cpu_flags(cpuinfo)
    assert "avx512_bf16" in flags and "fpu" in flags
    assert hardware.cpu_has_native_bf16(flags)
    assert not hardware.cpu_has_native_bf16({"avx512f", "avx2"})
    assert hardware.cpu_has_native_bf16({"amx_bf16"})
    assert hardware.cpu_flags(tmp_path / "missing") == set()


def test_job_cpu_count_prefers_sm_num_cpus():
    assert hardware.job_cpu_count({"SM_NUM_CPUS": "3"}) == 3
    assert hardware.job_cpu_count({"SM_NUM_CPUS": "zero"}) >= 1
    assert hardware.job_cpu_count({}) >= 1


def test_detect_runtime_sets_threads_and_records_the_mode():
    import torch

    before = torch.get_num_threads()
    try:
        runtime = hardware.detect_runtime(device="cpu", precision="auto", hook_records=True, num_cpus=1)
        assert torch.get_num_threads() == 1
        described = runtime.describe()
        assert described["precision"] == "fp32" and "hook" in described["precision_reason"]
        assert described["device"] == "cpu" and described["num_threads"] == 1
        assert not runtime.grad_scaler().is_enabled()
    finally:
        torch.set_num_threads(before)
