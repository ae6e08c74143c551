"""``auto`` precision: the float type a forward pass runs in when the user leaves the choice to protkit.

The rule follows measurements (docs/benchmarks.md, B1/B2/B7/B11; issue 25's Intel Xeon figures):

- a CPU with bf16 units (AMX-BF16, AVX512-BF16): **bf16** (teacher ESMC-300M 3.0x fp32, student 1.7x, min
  pooled cosine to fp32 0.99999);
- any other CPU: **fp32** (bf16 is emulated there: B1's bf16 row, ~0.2x fp32 on an AMD EPYC with AVX2);
- a CUDA GPU: **bf16 for the teacher** where the GPU computes bf16 (as esm's own ``ESMC.from_pretrained``
  loads it off the CPU), **fp32 for students** (unchanged).

Explicit ``fp32``/``bf16``/``fp16`` are kept as given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protkit.models.cpu import CpuCapabilities, this_cpu

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")  # the float types a forward pass may run in (torch dtypes: models.device.DTYPES)

AUTO = "auto"
PRECISION_OPTIONS = (AUTO, *PRECISIONS)  # what --precision and teachers.<t>.precision accept
MODEL_KINDS = ("teacher", "student")
# The fidelity guards bf16 keeps against fp32 (tests on real proteins: tests/models/test_bf16_fidelity.py on the
# CPU, tests/gpu on a GPU): min over proteins of the pooled vectors' cosine, 1st percentile over residues.
BF16_POOLED_COSINE = 0.999
BF16_RESIDUE_COSINE_P1 = 0.99


def auto_precision(device: torch.device, kind: str, cpu: CpuCapabilities | None = None) -> str:
    """The precision ``auto`` means for a ``kind`` model (``teacher`` or ``student``) on ``device``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    if device.type == "cuda":
        import torch

        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return "bf16" if kind == "teacher" and native_bf16 else "fp32"
    return cpu_precision(cpu or this_cpu())


def cpu_precision(cpu: CpuCapabilities) -> str:
    """``auto`` on ``cpu``, for the teacher and for students run in torch: bf16 where it has bf16 units."""
    return "bf16" if cpu.bf16_units else "fp32"


def resolve_precision(requested: str, device: torch.device, kind: str, cpu: CpuCapabilities | None = None) -> str:
    """``requested`` (``auto``, ``fp32``, ``bf16``, ``fp16``) as the precision to run in."""
    if requested == AUTO:
        return auto_precision(device, kind, cpu)
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_OPTIONS)}, got {requested!r}")
    return requested
