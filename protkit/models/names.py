"""Names and numbers every model module shares: the teachers' widths and the model file names.

A leaf module (it imports nothing of protkit), so that model code, checkpoint formats, quantization
and model resolution read one definition.
"""

from __future__ import annotations

# The released ESMC teachers and their hidden width (also ProtHash's ``teacher_dim`` for each).
TEACHER_WIDTHS: dict[str, int] = {"esmc_300m": 960, "esmc_600m": 1152}

# A ProtHash checkpoint directory (protkit's and the prothash package's format).
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# An int8 artifact directory (results/models/VARIANT/int8/).
INT8_SUBDIR = "int8"
INT8_WEIGHTS_FILE = "model.pt"
QUANT_FILE = "quantization.json"  # written last: its presence means the artifact is complete


def teacher_of_width(width: int) -> str:
    """The released teacher whose hidden width is ``width``, else ``unknown``."""
    return next((name for name, w in TEACHER_WIDTHS.items() if w == width), "unknown")
