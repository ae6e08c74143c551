"""``protkit export --format hf``: a self-contained Hugging Face model directory.

``config.json`` (with ``auto_map``), ``model.safetensors``, ``modeling_esmc.py`` or
``modeling_prothash.py`` (bundled from protkit's own code: :mod:`protkit.hf.bundle`) and the
tokenizer files. It loads with only torch and transformers installed::

    AutoTokenizer.from_pretrained(DIR)
    AutoModel.from_pretrained(DIR, trust_remote_code=True)          # also ...ForSequenceClassification,
                                                                   # ...ForTokenClassification, ...ForMaskedLM (teacher)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from transformers import PreTrainedModel

from protkit.hf.bundle import bundle
from protkit.hf.esmc import AUTO_MAP as ESMC_AUTO_MAP
from protkit.hf.esmc import (
    ESMCForMaskedLM, ESMCForSequenceClassification, ESMCForTokenClassification, ESMCHFConfig, ESMCModel,
)  # fmt: skip
from protkit.hf.prothash import AUTO_MAP as PROTHASH_AUTO_MAP
from protkit.hf.prothash import (
    SETTINGS, ProtHashForSequenceClassification, ProtHashForTokenClassification, ProtHashHFConfig, ProtHashModel,
)  # fmt: skip
from protkit.hf.tokenizer import protein_tokenizer
from protkit.io.atomic import atomic_dir, write_text
from protkit.io.outputs import claim_outputs
from protkit.models.esmc.model import CONTEXT_LENGTH as ESMC_CONTEXT
from protkit.models.prothash.checkpoint import ModelFormatError
from protkit.models.prothash.model import load_pretrained_dir
from protkit.models.resolve import ModelKind, classify_model, load_teacher_weights


def hf_model(model: str | Path) -> tuple[ESMCModel | ProtHashModel, str, Path]:
    """The Hugging Face model of ``model`` (the ESMC teacher: a preset, a weights file or a Hub-like
    directory; or a student directory in protkit's or the prothash package's format), its kind
    (``esmc``/``prothash``) and the path it was read from."""
    found = classify_model(model)
    if found.kind == ModelKind.TEACHER:
        teacher = load_teacher_weights(found.path, torch.device("cpu"), torch.float32)
        hf = ESMCModel(ESMCHFConfig(**teacher.config.to_dict()))
        hf.encoder.load_state_dict(teacher.state_dict(), strict=True)
        return hf, "esmc", found.path
    if found.kind == ModelKind.STUDENT:
        student = load_pretrained_dir(found.path)
        hf = ProtHashModel(ProtHashHFConfig(**{name: getattr(student.config, name) for name in SETTINGS}))
        hf.encoder.load_state_dict(student.state_dict(), strict=True)
        return hf, "prothash", found.path
    raise ModelFormatError(f"{model}: an {found.kind.value} model holds no float weights for Hugging Face; give the "
                           "fp32 student directory it was made from, or the teacher (esmc_300m, esmc_600m, a weights "
                           "file)")


HEADS = {  # (kind, head) -> the class; head: base, masked_lm, sequence, tokens
    ("esmc", "base"): ESMCModel, ("esmc", "masked_lm"): ESMCForMaskedLM,
    ("esmc", "sequence"): ESMCForSequenceClassification, ("esmc", "tokens"): ESMCForTokenClassification,
    ("prothash", "base"): ProtHashModel, ("prothash", "sequence"): ProtHashForSequenceClassification,
    ("prothash", "tokens"): ProtHashForTokenClassification,
}


def model_kind(hf: PreTrainedModel) -> str:
    """``esmc`` or ``prothash``: which of protkit's Hugging Face models ``hf`` is."""
    return "esmc" if isinstance(hf.config, ESMCHFConfig) else "prothash"


def export_hf(model: str | Path, output: str | Path) -> Path:
    """Write the Hugging Face directory of ``model`` (see the module docstring) to ``output``."""
    hf, _, source = hf_model(model)
    return write_hf(hf, output, inputs=[source])


def write_hf(hf: PreTrainedModel, output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Write one of protkit's Hugging Face models (a base model or one with a head, e.g. after
    fine-tuning) as a self-contained directory ``output`` (never over ``inputs``); returns it."""
    kind = model_kind(hf)
    auto_map = ESMC_AUTO_MAP if kind == "esmc" else PROTHASH_AUTO_MAP
    hf.config.auto_map = {auto: f"modeling_{kind}.{name}" for auto, name in auto_map.items()}
    hf.config.architectures = [type(hf).__name__]
    context = ESMC_CONTEXT if kind == "esmc" else hf.config.context_length
    with claim_outputs(directories=[output], inputs=inputs), atomic_dir(output) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        write_text(tmp / f"modeling_{kind}.py", bundle(f"protkit.hf.{kind}"))
        protein_tokenizer(context).save_pretrained(tmp)
    return Path(output)
