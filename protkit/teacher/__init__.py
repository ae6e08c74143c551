"""The teacher stage (``workflow/rules/teacher.smk``): the ESMC embedding cache, built once per
teacher and data set (by one job, or by parts gathered into one), and read by distillation and
evaluation."""

from protkit.teacher.build import build_cache
from protkit.teacher.layout import (
    CacheError, FingerprintMismatch, StageOptions, part_dir, read_manifest, sequence_parts,
)  # fmt: skip
from protkit.teacher.loading import teacher_from_config, write_random_teacher
from protkit.teacher.parts import gather_cache_parts
from protkit.teacher.read import (
    CachedTargets, CacheRows, StageResidues, StageTokenTargets, TokenTargets, load_pooled, load_stage_targets,
    load_token_targets,
)  # fmt: skip
from protkit.teacher.stage_targets import (
    DEFAULT_STAGE_LAYERS, StageTargets, default_stage_layers, stage_cache_bytes, stage_layers_for, stage_targets,
)  # fmt: skip

__all__ = [
    "DEFAULT_STAGE_LAYERS", "CacheError", "CacheRows", "CachedTargets", "FingerprintMismatch", "StageOptions",
    "StageResidues", "StageTargets", "StageTokenTargets", "TokenTargets", "build_cache", "default_stage_layers",
    "gather_cache_parts", "load_pooled", "load_stage_targets", "load_token_targets", "part_dir", "read_manifest",
    "sequence_parts", "stage_cache_bytes", "stage_layers_for", "stage_targets", "teacher_from_config",
    "write_random_teacher",
]  # fmt: skip
