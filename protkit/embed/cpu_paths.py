"""Which CPU path runs a ProtHash student when ``--backend`` and ``--precision`` are ``auto``: the
fastest one measured on the CPU's capability class (:mod:`protkit.models.cpu`) that keeps the vectors.

The measurements live in ``cpu_paths.json`` beside this module, one entry per capability class, each
B7's rows on one CPU of that class (``python -m benchmarks.cpu_paths`` records this machine's entry):
residues/s and the minimum cosine to torch fp32 of every path (``torch fp32``, ``torch bf16``,
``onnxruntime fp32``, ``onnxruntime int8``, ``torch int8``). The choice is made here, from those numbers:

- a float student: the fastest of the float paths whose minimum cosine is at least :data:`MIN_COSINE`
  (int8 is never chosen for a float request: it changes the model);
- ``--int8``: the fastest int8 path at that cosine; torch's int8 (torchao) only on CPUs with int8 dot
  products (without them it saturates: B3, cosine 0.955 on an AVX2 CPU).

A class with no entry keeps the default measured first (B7 on an AVX2 CPU): onnxruntime fp32, and
onnxruntime's int8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from protkit.models.cpu import CpuCapabilities
from protkit.models.precision import cpu_precision

PATHS_FILE = Path(__file__).with_name("cpu_paths.json")
MIN_COSINE = 0.999  # a path is a candidate only if every measured vector keeps this cosine to torch fp32
FLOAT_PATHS = {"torch fp32": ("torch", "fp32"), "torch bf16": ("torch", "bf16"),
               "onnxruntime fp32": ("onnxruntime", "fp32")}
INT8_PATHS = {"onnxruntime int8": "onnxruntime", "torch int8": "torch"}
UNMEASURED_FLOAT, UNMEASURED_INT8 = "onnxruntime fp32", "onnxruntime int8"


@dataclass(frozen=True)
class CpuPath:
    """A student's path on a CPU, and why it was chosen."""

    backend: str  # torch or onnxruntime
    precision: str  # fp32 or bf16 (int8 paths run fp32 activations)
    reason: str  # for the log: the class and the measurement behind the choice


def measured_classes(path: Path = PATHS_FILE) -> dict[str, dict]:
    """The entries of ``cpu_paths.json``: capability class -> {cpu, source, residues_per_s, min_cosine}."""
    return json.loads(path.read_text())["classes"]


def fastest(entry: dict, names: list[str]) -> str | None:
    """The fastest of ``names`` measured in ``entry`` at :data:`MIN_COSINE` (None: none qualifies)."""
    speeds, cosines = entry.get("residues_per_s", {}), entry.get("min_cosine", {})
    kept = [n for n in names if n in speeds and cosines.get(n, 0.0) >= MIN_COSINE]
    return max(kept, key=lambda n: speeds[n], default=None)


def choose_cpu_path(cpu: CpuCapabilities, int8: bool, classes: dict[str, dict] | None = None) -> CpuPath:
    """The path ``auto`` picks for a student on ``cpu`` (``int8``: the student's int8 form)."""
    entries = _classes() if classes is None else classes
    entry = entries.get(cpu.capability_class)
    where = f"CPU class {cpu.capability_class}"
    if int8:
        names = [n for n, backend in INT8_PATHS.items() if backend != "torch" or cpu.int8_dot]
        name = fastest(entry, names) if entry else None
        backend = INT8_PATHS[name or UNMEASURED_INT8]
        return CpuPath(backend, "fp32", _reason(where, name, entry))
    name = fastest(entry, list(FLOAT_PATHS)) if entry else None
    backend, precision = FLOAT_PATHS[name or UNMEASURED_FLOAT]
    return CpuPath(backend, precision, _reason(where, name, entry))


def describe_auto(cpu: CpuCapabilities) -> str:
    """``students on onnxruntime fp32 (--int8: onnxruntime int8), the teacher in fp32`` for ``cpu``."""
    student, int8 = choose_cpu_path(cpu, int8=False), choose_cpu_path(cpu, int8=True)
    return (f"students on {student.backend} {student.precision} (--int8: {int8.backend} int8), "
            f"the teacher in {cpu_precision(cpu)}")


def _reason(where: str, name: str | None, entry: dict | None) -> str:
    if name is None:
        return f"{where}: no measurement of this class in {PATHS_FILE.name}; the default measured first"
    speed = entry["residues_per_s"][name]
    return f"{where}: fastest measured at min cosine >= {MIN_COSINE} ({name}, {speed:,.0f} residues/s on {entry['cpu']})"


@lru_cache(maxsize=1)
def _classes() -> dict[str, dict]:
    return measured_classes()
