"""A teacher cache built by several jobs ("parts") and joined into one.

``teachers.<t>.jobs: N`` splits the sequences table into N disjoint parts by a hash of each sequence
(:func:`protkit.teacher.layout.sequence_parts`), so a sequence keeps its part when others are added. Part ``p``
is an ordinary cache in ``<cache>/part-p-of-N/`` (:func:`~protkit.teacher.layout.part_dir`) built by
``build_cache(..., part=(p, N))``: it resumes shard by shard, records ``"part": [p, N]`` in its
manifest and carries the fingerprint of the whole cache, so a part directory built with other
settings is refused. :func:`gather_cache_parts` then writes the cache itself, one shard at a time:
the same shard files as a single-job build of the table (rows in table order, the same shard
metadata) and the same manifest, plus ``"parts": N``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from protkit.io.atomic import write_json
from protkit.io.outputs import claim_outputs
from protkit.io.columns import STORE_DTYPES
from protkit.teacher.layout import (
    MANIFEST_FILE, CacheError, FingerprintMismatch, StageOptions, check_directory, pooled_name, read_manifest,
    pooled_columns, sequence_parts, shard_lists, tensor_keys, tensor_kinds, tensor_name,
)  # fmt: skip
from protkit.teacher.read import stored_vectors
from protkit.teacher.shards import (
    Columns, prepare_directory, rows_digest, shard_done, shard_metadata, write_pooled, write_tensors,
)  # fmt: skip

log = logging.getLogger(__name__)

# manifest entries every part of one build shares (the fingerprint covers the teacher's settings)
SHARED_KEYS = ("fingerprint", "teacher", "dataset", "d_model", "poolings", "store_dtype", "tokens", "max_length",
               "shard_size")


def gather_cache_parts(part_dirs: Sequence[str | Path], out_dir: str | Path, sequences: pd.DataFrame) -> dict:
    """Join the parts in ``part_dirs`` (all ``n`` parts of one scattered build of ``sequences``, each
    built by ``build_cache(..., part=(p, n))``) into the cache ``out_dir``; returns its manifest.

    Holds one shard per part in memory at a time. As in :func:`~protkit.teacher.build.build_cache`, shards
    already in ``out_dir`` for the same fingerprint and rows are kept and a directory holding another
    fingerprint is refused. CacheError if a part is missing, unfinished or was built from other rows.
    """
    out_dir = Path(out_dir)
    parts = _part_manifests(part_dirs)
    first = parts[0][1]
    columns: Columns = (sequences["id"].astype(str).tolist(), sequences["sequence"].astype(str).tolist(),
                        sequences["split"].astype(str).tolist())
    assignment = sequence_parts(columns[1], len(parts))  # (N,) part of each row
    readers = [_PartReader(directory, manifest, np.flatnonzero(assignment == p), columns)
               for p, (directory, manifest) in enumerate(parts)]
    position = np.empty(len(assignment), dtype=np.int64)  # (N,) row index within its part
    for reader in readers:
        position[reader.rows] = np.arange(len(reader.rows))
        if reader.manifest["n_sequences"] != len(reader.rows):
            raise CacheError(f"teacher cache part {reader.directory} holds {reader.manifest['n_sequences']} "
                             f"sequences but the sequences table has {len(reader.rows)} in that part: it was "
                             "built from another table; rebuild it (teacher_cache_part)")

    with claim_outputs(directories=[out_dir], inputs=[d for d, _ in parts]):
        return _write_gathered(out_dir, readers, assignment, position, columns, first)


def _write_gathered(out_dir: Path, readers: list["_PartReader"], assignment: np.ndarray, position: np.ndarray,
                    columns: Columns, first: dict) -> dict:
    """Write the shards not done yet and the manifest of the gathered cache; returns the manifest."""
    fingerprint = first["fingerprint"]
    out_dir.mkdir(parents=True, exist_ok=True)
    check_directory(out_dir, fingerprint, first["fingerprint_parts"])
    stages = StageOptions.of(first)
    shard_rows, digests, done = prepare_directory(out_dir, fingerprint, first["fingerprint_parts"], columns,
                                                   first["shard_size"], tensor_kinds(first["tokens"], stages))
    for k, shard in enumerate(shard_rows):
        if done[k]:
            continue
        rows = np.arange(shard.start, shard.stop)
        pooled, per_residue = _gather_rows(readers, assignment[rows], position[rows], first)
        meta = shard_metadata(fingerprint, digests[k])
        ids, splits = [columns[0][i] for i in rows], [columns[2][i] for i in rows]
        for kind, named in per_residue.items():
            write_tensors(out_dir / tensor_name(kind, k), named, meta)
        write_pooled(out_dir / pooled_name(k), ids, splits, pooled, first["store_dtype"], meta)
    manifest = {key: value for key, value in first.items() if key != "part"}
    manifest.update(n_sequences=len(assignment), **shard_lists(len(shard_rows), first["tokens"], stages),
                    parts=len(readers))
    write_json(out_dir / MANIFEST_FILE, manifest)
    log.info("teacher cache %s: %d sequences in %d shards (%d kept) gathered from %d parts", out_dir,
             len(assignment), len(shard_rows), sum(done), len(readers))
    return manifest


def _part_manifests(part_dirs: Sequence[str | Path]) -> list[tuple[Path, dict]]:
    """``(directory, manifest)`` of every part, by part index; checks they are the parts of one build."""
    found = [(Path(d), read_manifest(d)) for d in part_dirs]
    if not found:
        raise ValueError("gather_cache_parts: no part directories given")
    for directory, manifest in found:
        if "part" not in manifest:
            raise CacheError(f"teacher cache {directory} is not a part (its {MANIFEST_FILE} has no 'part'); "
                             "pass the part-P-of-N directories built with build_cache(..., part=(p, n))")
    count = len(found)
    indices = sorted(tuple(manifest["part"]) for _, manifest in found)
    if indices != [(p, count) for p in range(count)]:
        raise CacheError(f"teacher cache parts {', '.join(str(d) for d, _ in found)} are parts "
                         f"{', '.join(f'{p}-of-{n}' for p, n in indices)}; expected each of 0 .. {count - 1} "
                         f"of {count} once")
    found.sort(key=lambda item: item[1]["part"][0])
    first_dir, first = found[0]
    for directory, manifest in found[1:]:
        if manifest["fingerprint"] != first["fingerprint"]:
            ours, theirs = first.get("fingerprint_parts", {}), manifest.get("fingerprint_parts", {})
            differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            hint = (" (precision auto on nodes of different CPU classes: set teachers.<t>.precision, or the same "
                    "PROTKIT_CPU_FLAGS on every node)" if "precision" in differ else "")
            raise FingerprintMismatch(
                f"teacher cache parts {first_dir} and {directory} have fingerprints {first['fingerprint']} and "
                f"{manifest['fingerprint']}: built with other teacher weights or settings"
                f"{' (' + ', '.join(differ) + ')' if differ else ''}{hint}. Rebuild the stale "
                "part (delete its directory and rerun teacher_cache_part)."
            )
        differ = [key for key in SHARED_KEYS if manifest[key] != first[key]]
        if differ:
            raise CacheError(f"teacher cache parts {first_dir} and {directory} differ in {', '.join(differ)}; "
                             "rebuild them with one configuration")
    return found


def _gather_rows(
    readers: list["_PartReader"], in_part: np.ndarray, position: np.ndarray, manifest: dict,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, torch.Tensor]]]:
    """Pooled vectors ``{column: (n, D)}`` (stored dtype) and per-residue tensors ``{kind: {key: tensor}}``
    of the rows whose parts and positions within them are ``in_part`` and ``position`` (both (n,)), in
    that order."""
    numpy_type = STORE_DTYPES[manifest["store_dtype"]][1]
    pooled = {c: np.empty((len(in_part), manifest["d_model"]), dtype=numpy_type) for c in pooled_columns(manifest)}
    kinds = tensor_kinds(manifest["tokens"], StageOptions.of(manifest))
    per_row: dict[str, list[dict[str, torch.Tensor]]] = {kind: [{}] * len(in_part) for kind in kinds}
    for reader in readers:
        slots = np.flatnonzero(in_part == reader.index)
        if len(slots) == 0:
            continue
        # a part's rows are in table order, so the rows of one shard are consecutive within the part
        vectors, tensors = reader.read(int(position[slots[0]]), int(position[slots[-1]]) + 1)
        for c in pooled:
            pooled[c][slots] = vectors[c]
        for kind in kinds:
            for slot, named in zip(slots, tensors[kind]):
                per_row[kind][slot] = named
    return pooled, {kind: {k: t for named in rows for k, t in named.items()} for kind, rows in per_row.items()}


@dataclass
class _PartReader:
    """The rows of one part cache, read one of its shards at a time."""

    directory: Path
    manifest: dict
    rows: np.ndarray  # (n_p,) rows of the sequences table in this part, in table order
    columns: Columns
    _shard: int = -1  # the shard whose vectors _vectors holds
    _vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def index(self) -> int:
        return self.manifest["part"][0]

    def read(self, lo: int, hi: int) -> tuple[dict[str, np.ndarray], dict[str, list[dict[str, torch.Tensor]]]]:
        """Vectors ``{column: (hi - lo, D)}`` and per-residue tensors (``{kind: [{key: tensor}, ...]}``, one
        dict per row) of this part's rows ``lo .. hi - 1``."""
        size = self.manifest["shard_size"]
        stages = StageOptions.of(self.manifest)
        pieces: list[dict[str, np.ndarray]] = []
        tensors: dict[str, list[dict[str, torch.Tensor]]] = {
            kind: [] for kind in tensor_kinds(self.manifest["tokens"], stages)}
        for shard in range(lo // size, (hi - 1) // size + 1):
            start, stop = max(lo, shard * size) - shard * size, min(hi, (shard + 1) * size) - shard * size
            pieces.append({c: v[start:stop] for c, v in self._pooled(shard).items()})
            for kind, rows in tensors.items():
                rows += self._tensors(kind, shard, start, stop, stages.layers)
        return {c: np.concatenate([piece[c] for piece in pieces]) for c in pooled_columns(self.manifest)}, tensors

    def _pooled(self, shard: int) -> dict[str, np.ndarray]:
        if self._shard != shard:
            self._check(shard)
            table = pq.read_table(self.directory / pooled_name(shard))
            self._shard, self._vectors = shard, stored_vectors(table, pooled_columns(self.manifest),
                                                               self.manifest["d_model"])
        return self._vectors

    def _tensors(self, kind: str, shard: int, start: int, stop: int, layers: Sequence[int]) -> list[dict]:
        """``{key: (L_i, W) float16}`` of each of the shard's rows ``start .. stop - 1`` in its ``kind`` file."""
        from safetensors import safe_open

        size = self.manifest["shard_size"]
        ids = [self.columns[0][i] for i in self.rows[shard * size + start:shard * size + stop]]
        with safe_open(str(self.directory / tensor_name(kind, shard)), framework="pt") as handle:
            return [{key: handle.get_tensor(key) for key in tensor_keys(kind, rid, layers)} for rid in ids]

    def _check(self, shard: int) -> None:
        """CacheError unless the shard holds this part's rows of the current sequences table."""
        size = self.manifest["shard_size"]
        digest = rows_digest(*self.columns, self.rows[shard * size:(shard + 1) * size])
        kinds = tensor_kinds(self.manifest["tokens"], StageOptions.of(self.manifest))
        if not shard_done(self.directory, shard, self.manifest["fingerprint"], digest, kinds):
            raise CacheError(f"teacher cache part {self.directory}: {pooled_name(shard)} is missing or was built "
                             "from other rows of the sequences table; rebuild this part (teacher_cache_part)")
