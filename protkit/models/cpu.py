"""What the CPU's matrix units can do: bf16 (AMX-BF16, AVX512-BF16) and int8 dot products (AMX-INT8,
AVX512-VNNI, AVX-VNNI), read from ``/proc/cpuinfo``.

CPU kinds differ from machine to machine (an AMD EPYC with AVX2 only; an Intel Xeon with AVX512-VNNI,
AVX512-BF16 and AMX), and the fast path differs with them: bf16 runs on bf16 units ~3x faster than fp32
and is emulated (slower than fp32) without them; int8 without a dot-product instruction saturates. This
module is the one place that reads the flags; ``protkit --version`` and every benchmark header report it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
FLAGS_ENV = "PROTKIT_CPU_FLAGS"  # set: these flags (space or comma separated) instead of the CPU's own
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # bf16 matrix or dot-product units
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # int8 dot products that do not saturate
SHOWN_FLAGS = {"amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "avx512_bf16": "AVX512-BF16",
               "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI", "avx512f": "AVX512F", "avx2": "AVX2"}
# Capability classes, best first: the first whose flag the CPU has names it.
CLASSES = (("amx", "amx_bf16"), ("avx512-bf16", "avx512_bf16"), ("vnni", "avx512_vnni"), ("vnni", "avx_vnni"),
           ("avx512", "avx512f"), ("avx2", "avx2"))


@dataclass(frozen=True)
class CpuCapabilities:
    """A CPU's model name and the instruction-set flags that choose protkit's CPU paths."""

    model: str
    flags: frozenset[str]

    @property
    def bf16_units(self) -> bool:
        """bf16 runs in hardware (else it is emulated, slower than fp32)."""
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def int8_dot(self) -> bool:
        """int8 matrix products have a dot-product instruction (else they saturate or crawl)."""
        return any(f in self.flags for f in INT8_DOT_FLAGS)

    @property
    def capability_class(self) -> str:
        """``amx``, ``avx512-bf16``, ``vnni``, ``avx512``, ``avx2`` or ``baseline``."""
        return next((name for name, flag in CLASSES if flag in self.flags), "baseline")

    def describe(self) -> str:
        """``AMD EPYC (class avx2: AVX2; bf16 emulated; int8 without dot products)``."""
        shown = ", ".join(label for flag, label in SHOWN_FLAGS.items() if flag in self.flags) or "no AVX2"
        bf16 = "bf16 units" if self.bf16_units else "bf16 emulated"
        int8 = "int8 dot products" if self.int8_dot else "int8 without dot products"
        return f"{self.model} (class {self.capability_class}: {shown}; {bf16}; {int8})"


def read_cpu(cpuinfo: str) -> CpuCapabilities:
    """The capabilities named in a ``/proc/cpuinfo`` text (its first processor's lines)."""
    model, flags = "", frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuCapabilities(model or platform.processor() or platform.machine(), flags)


@lru_cache(maxsize=1)
def this_cpu() -> CpuCapabilities:
    """This machine's CPU (no flags where ``/proc/cpuinfo`` cannot be read: the baseline class).

    ``PROTKIT_CPU_FLAGS`` replaces the flags it reports, so that every node of a mixed cluster takes the
    same ``auto`` paths (``PROTKIT_CPU_FLAGS=avx2``: the AVX2 defaults) and so the test suite can run the
    same paths on every machine."""
    try:
        found = read_cpu(CPUINFO.read_text())
    except OSError:
        found = CpuCapabilities(platform.processor() or platform.machine(), frozenset())
    override = os.environ.get(FLAGS_ENV)
    if override is None:
        return found
    return CpuCapabilities(f"{found.model} [flags from {FLAGS_ENV}]", frozenset(override.replace(",", " ").split()))
