"""How many jobs embed a FASTA file in the workflow: one per ``residues_per_shard`` residues, at
least 1 and at most ``embed.shards``, decided at plan time from the file's size (a 20-protein query
file is one job, a proteome several)."""

from __future__ import annotations

import math
from pathlib import Path

from protkit.sequences.fasta import is_gzip

GZIP_RATIO = 3.0  # protein FASTA compresses about 3x: residues of a .gz file estimated as 3 bytes a byte


def estimated_residues(path: str | Path) -> int:
    """An upper estimate of the residues in a FASTA file: its bytes (headers and line ends included),
    times ``GZIP_RATIO`` when it is gzip-compressed. The same file always gives the same number."""
    size = Path(path).stat().st_size
    return int(size * GZIP_RATIO) if is_gzip(path) else size


def shard_count(path: str | Path, max_shards: int, residues_per_shard: int) -> int:
    """Embedding jobs for ``path``: ``ceil(estimated residues / residues_per_shard)`` within [1, max_shards]."""
    return max(1, min(max_shards, math.ceil(estimated_residues(path) / max(1, residues_per_shard))))
