"""Will a model fit? Its memory, estimated from its settings before anything is allocated, against
the machine's memory."""

from __future__ import annotations

import os

TRAINING_BYTES_PER_PARAMETER = 16  # fp32 weights, gradients and AdamW's two moments
INFERENCE_BYTES_PER_PARAMETER = 4  # fp32 weights


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when the system does not tell)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits(parameters: int, bytes_per_parameter: int, what: str) -> None:
    """ValueError naming ``what`` when ``parameters`` at ``bytes_per_parameter`` exceed the machine's memory."""
    needed, available = parameters * bytes_per_parameter, machine_memory()
    if available and needed > available:
        raise ValueError(f"{what}: {parameters:,} parameters need about {needed / 2**30:,.1f} GiB, more than this "
                         f"machine's {available / 2**30:,.1f} GiB; choose fewer layers or a smaller width")
