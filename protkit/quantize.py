"""The quantize stage (``workflow/rules/quantize.smk``): a trained fp32 student -> its int8 artifact.

The quantization itself and the artifact's format are :mod:`protkit.models.prothash.int8`'s.
"""

from __future__ import annotations

from pathlib import Path

from protkit.io.outputs import claim_outputs
from protkit.models.names import WEIGHTS_FILE
from protkit.models.prothash.int8 import quantize_model, save_quantized
from protkit.models.prothash.model import load_pretrained_dir


def quantize_pretrained(model_dir: str | Path, out_dir: str | Path, method: str = "int8_dynamic") -> Path:
    """fp32 ``model_dir`` (``save_pretrained`` layout) -> int8 ``out_dir``."""
    model_dir = Path(model_dir)
    with claim_outputs(directories=[out_dir], inputs=[model_dir, model_dir / WEIGHTS_FILE]):
        model = load_pretrained_dir(model_dir)
        return save_quantized(quantize_model(model, method), out_dir, source_weights=model_dir / WEIGHTS_FILE)
