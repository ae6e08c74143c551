"""CPU capabilities from /proc/cpuinfo: the class that chooses CPU paths, and where it is reported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protkit.models.cpu import read_cpu, this_cpu


def cpuinfo(model: str, flags: str) -> str:
    """Two processors' lines, as /proc/cpuinfo has them (the first one counts)."""
    one = f"processor\t: 0\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    return one + one.replace("processor\t: 0", "processor\t: 1")


BASE = "fpu sse sse2 avx fma f16c avx2"


@pytest.mark.parametrize(("model", "flags", "klass", "bf16", "int8"), [
    ("AMD EPYC", BASE, "avx2", False, False),
    ("Intel Xeon Platinum 8480+", f"{BASE} avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile", "amx", True, True),
    ("Intel Xeon Gold 6230", f"{BASE} avx512f avx512_vnni", "vnni", False, True),
    ("AMD EPYC 9654", f"{BASE} avx512f avx512_vnni avx512_bf16", "avx512-bf16", True, True),
    ("12th Gen Intel Core i7", f"{BASE} avx_vnni", "vnni", False, True),
    ("Intel Xeon E5", f"{BASE} avx512f", "avx512", False, False),
    ("old", "fpu sse sse2", "baseline", False, False),
])
def test_capability_class_follows_the_flags(model: str, flags: str, klass: str, bf16: bool, int8: bool) -> None:
    cpu = read_cpu(cpuinfo(model, flags))
    assert (cpu.model, cpu.capability_class, cpu.bf16_units, cpu.int8_dot) == (model, klass, bf16, int8)
    assert cpu.describe().startswith(f"{model} (class {klass}: ")


def test_amx_is_named_with_its_units() -> None:
    described = read_cpu(cpuinfo("Xeon", f"{BASE} avx512f avx512_bf16 amx_bf16 amx_int8")).describe()
    assert "AMX-BF16" in described and "AMX-INT8" in described and "bf16 units" in described


def test_no_cpuinfo_is_the_baseline_class() -> None:
    cpu = read_cpu("")
    assert cpu.capability_class == "baseline" and not cpu.bf16_units and cpu.model


def test_version_names_the_cpu_and_its_class() -> None:
    done = subprocess.run([sys.executable, "-m", "protkit", "--version"], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("protkit ") and lines[1] == f"CPU: {this_cpu().describe()}"
    assert lines[2] == "auto on this CPU: students on onnxruntime fp32 (--int8: onnxruntime int8), the teacher in fp32"
