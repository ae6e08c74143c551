"""The ProtHash student: settings and presets (:mod:`.config`), the model (:mod:`.model`), its
checkpoint formats (:mod:`.checkpoint`: protkit's and the ``prothash`` package's), the export to
the package's format (:mod:`.convert`) and the torchao int8 artifact (:mod:`.int8`)."""

from protkit.models.prothash.checkpoint import ModelFormatError, detect_format, format_label
from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.models.prothash.convert import export_prothash
from protkit.models.prothash.int8 import load_quantized, quantize_model, save_quantized
from protkit.models.prothash.model import ProtHash, load_pretrained_dir
from protkit.sequences.pooling import POOLINGS

__all__ = [
    "POOLINGS", "PRESETS", "ModelFormatError", "ProtHash", "ProtHashConfig", "detect_format", "export_prothash",
    "format_label", "load_pretrained_dir", "load_quantized", "quantize_model", "save_quantized",
]  # fmt: skip
