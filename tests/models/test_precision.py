"""``auto`` precision per device and CPU class (mocked capabilities), and PROTKIT_CPU_FLAGS."""

from __future__ import annotations

import pytest
import torch

from protkit.models.cpu import FLAGS_ENV, CpuCapabilities, this_cpu
from protkit.models.precision import auto_precision, resolve_precision

CPU = torch.device("cpu")
AVX2 = CpuCapabilities("AMD EPYC", frozenset({"avx2", "fma"}))
VNNI = CpuCapabilities("Intel Xeon Gold 6230", frozenset({"avx2", "avx512f", "avx512_vnni"}))
AVX512_BF16 = CpuCapabilities("AMD EPYC 9654", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
AMX = CpuCapabilities("Intel Xeon 8480+", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                                                    "amx_int8"}))
BASELINE = CpuCapabilities("old", frozenset())


@pytest.mark.parametrize(("cpu", "expected"), [(AVX2, "fp32"), (VNNI, "fp32"), (BASELINE, "fp32"),
                                               (AVX512_BF16, "bf16"), (AMX, "bf16")])
@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_auto_is_bf16_exactly_where_the_cpu_has_bf16_units(cpu: CpuCapabilities, expected: str, kind: str) -> None:
    assert auto_precision(CPU, kind, cpu) == expected
    assert resolve_precision("auto", CPU, kind, cpu) == expected


@pytest.mark.parametrize(("native_bf16", "teacher", "student"), [(True, "bf16", "fp32"), (False, "fp32", "fp32")])
def test_auto_on_a_gpu_runs_the_teacher_in_bf16_and_students_as_before(
        monkeypatch: pytest.MonkeyPatch, native_bf16: bool, teacher: str, student: str) -> None:
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: asked.append(including_emulation) or native_bf16)
    cuda = torch.device("cuda")
    assert (auto_precision(cuda, "teacher", AMX), auto_precision(cuda, "student", AMX)) == (teacher, student)
    assert asked and not any(asked)  # emulated bf16 (pre-Ampere) does not count


@pytest.mark.parametrize("explicit", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept_on_every_cpu(explicit: str) -> None:
    assert {resolve_precision(explicit, CPU, "student", cpu) for cpu in (AVX2, AMX, BASELINE)} == {explicit}


def test_unknown_precision_and_kind_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"precision must be one of auto, fp32, bf16, fp16, got 'int4'"):
        resolve_precision("int4", CPU, "student", AVX2)
    with pytest.raises(ValueError, match=r"model kind must be one of teacher, student"):
        auto_precision(CPU, "adapter", AVX2)


def test_cpu_flags_from_the_environment_replace_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLAGS_ENV, "avx2,avx512f avx512_bf16 amx_bf16")
    this_cpu.cache_clear()
    try:
        cpu = this_cpu()
        assert cpu.capability_class == "amx" and cpu.bf16_units and f"[flags from {FLAGS_ENV}]" in cpu.model
        assert auto_precision(CPU, "teacher") == "bf16"
        monkeypatch.setenv(FLAGS_ENV, "")
        this_cpu.cache_clear()
        assert this_cpu().capability_class == "baseline" and auto_precision(CPU, "student") == "fp32"
    finally:
        monkeypatch.undo()
        this_cpu.cache_clear()
