"""The ProtHash 1.0 student (four stages, an adapter per stage, an optional MLM head): settings and
presets (:mod:`.config`), the model (:mod:`.model`), its checkpoint formats and the export to the
``prothash`` 1.0 package's format (:mod:`.checkpoint`)."""

from protkit.models.prothash_v1.checkpoint import detect_v1_format, export_prothash_v1, read_staged_checkpoint
from protkit.models.prothash_v1.config import PRESETS, StagedConfig
from protkit.models.prothash_v1.model import StagedProtHash, load_staged_dir

__all__ = [
    "PRESETS", "StagedConfig", "StagedProtHash", "detect_v1_format", "export_prothash_v1", "load_staged_dir",
    "read_staged_checkpoint",
]  # fmt: skip
