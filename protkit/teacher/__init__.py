"""The teacher stage (``workflow/rules/teacher.smk``): the ESMC embedding cache, built once per
teacher and data set (by one job, or by parts gathered into one), and read by distillation and
evaluation."""

from protkit.teacher.build import build_cache
from protkit.teacher.layout import CacheError, FingerprintMismatch, part_dir, read_manifest, sequence_parts
from protkit.teacher.loading import teacher_from_config, write_random_teacher
from protkit.teacher.parts import gather_cache_parts
from protkit.teacher.read import CachedTargets, CacheRows, TokenTargets, load_pooled, load_token_targets

__all__ = [
    "CacheError", "CacheRows", "CachedTargets", "FingerprintMismatch", "TokenTargets", "build_cache",
    "gather_cache_parts", "load_pooled", "load_token_targets", "part_dir", "read_manifest", "sequence_parts",
    "teacher_from_config", "write_random_teacher",
]  # fmt: skip
