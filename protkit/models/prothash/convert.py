"""A ProtHash student written in the ``prothash`` package's format (``protkit export --format prothash``).

Like Hugging Face's ``convert_*.py`` modules, this one imports the model and is never imported by it.
"""

from __future__ import annotations

from pathlib import Path

from protkit.models.names import QUANT_FILE
from protkit.models.prothash.checkpoint import ModelFormatError, to_prothash, write_checkpoint
from protkit.models.prothash.model import ProtHash, load_pretrained_dir


def export_prothash(model_or_dir: ProtHash | str | Path, out_dir: str | Path) -> Path:
    """Write a directory that the prothash package's ``ProtHash.from_pretrained(out_dir)`` loads.

    Rotary models are written in prothash 0.2.x's layout, absolute-position models in 0.1.x's
    (``position_embeddings.weight``; load those with prothash 0.1.x). Every tensor the package's
    model has is written, rotary ``inv_freq`` buffers included: its loader uses ``strict=False``
    and would silently keep a missing tensor's random initial value. ``config.json`` holds exactly
    the package's constructor arguments.

    Refused, with a ModelFormatError saying why: an int8 artifact (a directory with
    ``quantization.json``, or quantized weights), an adapter with a bias, a vocabulary other than
    ESM's 33 tokens. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if isinstance(model_or_dir, ProtHash):
        model, where = model_or_dir, "model"
    else:
        source = Path(model_or_dir)
        if (source / QUANT_FILE).is_file():
            raise ModelFormatError(
                f"{source}: an int8 artifact ({QUANT_FILE}); the prothash format stores float weights: "
                f"export the fp32 model directory it was made from (the parent of int8/)"
            )
        if source.resolve() == out_dir.resolve():
            raise ModelFormatError(f"{out_dir}: export into another directory than the source model's")
        model, where = load_pretrained_dir(source), str(source)
    settings, state = to_prothash(model.config, model.state_dict(), where)
    return write_checkpoint(out_dir, settings, state)
