"""Reading a complete teacher cache: its pooled vectors (all at once, or rows on demand) and its
per-residue targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from protkit.io.columns import column_vectors
from protkit.io.metadata import read_protkit_metadata
from protkit.teacher.layout import CacheError, check_fingerprint, read_manifest


@dataclass
class CachedTargets:
    ids: list[str]
    splits: np.ndarray  # (N,) str, "train"/"test"
    vectors: dict[str, np.ndarray]  # pooling -> (N, D) float32
    manifest: dict


def load_pooled(cache_dir: str | Path) -> CachedTargets:
    """All pooled teacher vectors of a complete cache, in sequences-table order, as float32."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    tables = []
    for name in manifest["shards"]:
        found = read_protkit_metadata(cache_dir / name, required=False)
        check_fingerprint(cache_dir, cache_dir / name, found.get("fingerprint"), manifest["fingerprint"])
        tables.append(pq.read_table(cache_dir / name))
    table = pa.concat_tables(tables)
    if table.num_rows != manifest["n_sequences"]:
        raise CacheError(f"teacher cache {cache_dir}: shards hold {table.num_rows} rows but manifest.json "
                         f"says {manifest['n_sequences']}; rerun teacher_cache")
    vectors = stored_vectors(table, manifest["poolings"], manifest["d_model"])
    return CachedTargets(
        ids=table.column("id").to_pylist(),
        splits=np.asarray(table.column("split").to_pylist(), dtype=str),
        vectors={p: v.astype(np.float32) for p, v in vectors.items()},  # (N, D)
        manifest=manifest,
    )


def stored_vectors(table: pa.Table, poolings: Iterable[str], dim: int) -> dict[str, np.ndarray]:
    """``{pooling: (n, D)}`` of a pooled shard table, in the stored dtype (float16/float32)."""
    return {p: column_vectors(table.column(p), dim) for p in poolings}


class TokenTargets:
    """Per-residue teacher targets of a complete cache built with ``tokens=True``, by sequence id."""

    def __init__(self, cache_dir: str | Path):
        from safetensors import safe_open

        self.cache_dir = Path(cache_dir)
        manifest = read_manifest(self.cache_dir)
        if not manifest["tokens"]:
            raise CacheError(f"teacher cache {self.cache_dir} was built without per-residue targets; "
                             "set the teacher cache option tokens: true and rerun teacher_cache")
        self.shard_of: dict[str, str] = {}
        for name in manifest["token_shards"]:
            with safe_open(str(self.cache_dir / name), framework="pt") as handle:
                self.shard_of.update(dict.fromkeys(handle.keys(), name))

    def get(self, ids: Iterable[str], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """``{id: (L_i, D)}`` for the requested ids; KeyError naming unknown ids."""
        from safetensors import safe_open

        ids = list(ids)
        unknown = [i for i in ids if i not in self.shard_of]
        if unknown:
            raise KeyError(f"teacher cache {self.cache_dir} has no per-residue targets for "
                           f"{len(unknown)} id(s), e.g. {', '.join(unknown[:5])}")
        by_shard: dict[str, list[str]] = {}
        for rid in ids:
            by_shard.setdefault(self.shard_of[rid], []).append(rid)
        out: dict[str, torch.Tensor] = {}
        for name, wanted in by_shard.items():
            with safe_open(str(self.cache_dir / name), framework="pt") as handle:
                for rid in wanted:
                    out[rid] = handle.get_tensor(rid).to(dtype)  # (L_i, D)
        return {rid: out[rid] for rid in ids}


def load_token_targets(cache_dir: str | Path, ids: Iterable[str]) -> dict[str, torch.Tensor]:
    """``{id: (L_i, D) float32}`` per-residue teacher targets (see :class:`TokenTargets`)."""
    return TokenTargets(cache_dir).get(ids)


class CacheRows:
    """Rows ``rows`` (cache row numbers) of one pooling of a teacher cache, read from its parquet
    shards when sliced: ``cache_rows[a:b]`` is ``(b - a, D)`` float32, as ``load_pooled`` gives them.
    The last shard read is kept, so rows in cache order read each shard once."""

    def __init__(self, cache_dir: str | Path, shards: Sequence[str], shard_starts: np.ndarray, pooling: str,
                 dim: int, rows: np.ndarray):
        self.cache_dir, self.shards, self.starts = Path(cache_dir), list(shards), shard_starts  # (S + 1,)
        self.pooling, self.rows = pooling, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), dim)
        self._shard: tuple[int, np.ndarray] | None = None

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        wanted = self.rows[key] if isinstance(key, slice) else self.rows[np.asarray(key, dtype=np.int64)]
        out = np.empty((len(wanted), self.shape[1]), np.float32)
        shard_of = np.searchsorted(self.starts, wanted, side="right") - 1
        for shard in np.unique(shard_of):
            at = shard_of == shard
            out[at] = self._vectors(int(shard))[wanted[at] - self.starts[shard]]
        return out

    def _vectors(self, shard: int) -> np.ndarray:
        if self._shard is None or self._shard[0] != shard:
            column = pq.read_table(self.cache_dir / self.shards[shard], columns=[self.pooling]).column(self.pooling)
            self._shard = (shard, column_vectors(column, self.shape[1]))  # (n, D) store dtype
        return self._shard[1]


def cache_index(cache_dir: str | Path, manifest: dict) -> tuple[pa.Array, np.ndarray]:
    """The ids of a teacher cache in row order (arrow) and the first row of each shard (``S + 1``)."""
    ids = [pq.read_table(Path(cache_dir) / name, columns=["id"]).column("id").combine_chunks()
           for name in manifest["shards"]]
    starts = np.concatenate([[0], np.cumsum([len(i) for i in ids])]).astype(np.int64)
    return (pa.concat_arrays(ids) if ids else pa.array([], pa.string())), starts
