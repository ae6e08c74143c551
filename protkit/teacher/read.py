"""Reading a complete teacher cache: its pooled vectors (all at once, or rows on demand), its
per-residue targets and its stage targets (ProtHash 1.0: chosen layers and MLM logits)."""

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
from protkit.teacher.layout import (
    LOGITS_KIND, MANIFEST_LISTS, STAGES_KIND, CacheError, StageOptions, check_fingerprint, layer_column, read_manifest,
    stage_key,
)  # fmt: skip


@dataclass
class CachedTargets:
    ids: list[str]
    splits: np.ndarray  # (N,) str, "train"/"test"
    vectors: dict[str, np.ndarray]  # pooling (and ``layer{l}_mean`` when asked for) -> (N, D) float32
    manifest: dict


def load_pooled(cache_dir: str | Path, layers: Sequence[int] = ()) -> CachedTargets:
    """All pooled teacher vectors of a complete cache, in sequences-table order, as float32; with
    ``layers``, also the mean vectors of those stage layers (``vectors["layer7_mean"]``)."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    check_stages(cache_dir, manifest, layers)
    tables = []
    for name in manifest["shards"]:
        found = read_protkit_metadata(cache_dir / name, required=False)
        check_fingerprint(cache_dir, cache_dir / name, found.get("fingerprint"), manifest["fingerprint"])
        tables.append(pq.read_table(cache_dir / name))
    table = pa.concat_tables(tables)
    if table.num_rows != manifest["n_sequences"]:
        raise CacheError(f"teacher cache {cache_dir}: shards hold {table.num_rows} rows but manifest.json "
                         f"says {manifest['n_sequences']}; rerun teacher_cache")
    vectors = stored_vectors(table, [*manifest["poolings"], *(layer_column(x) for x in layers)], manifest["d_model"])
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


def check_stages(cache_dir: Path, manifest: dict, layers: Sequence[int] = (), tokens: bool = False,
                 logits: bool = False) -> None:
    """CacheError naming the directory unless the cache stores the stage layers ``layers`` (per
    residue too when ``tokens``) and, when ``logits``, the per-residue logits."""
    stored = StageOptions.of(manifest)
    missing = [x for x in layers if x not in stored.layers]
    if missing or (tokens and layers and not stored.tokens):
        what = "per-residue vectors" if not missing else "layer(s) " + ", ".join(map(str, missing))
        raise CacheError(f"teacher cache {cache_dir} holds no {what} of the teacher's stage layers (it stores "
                         f"layers {list(stored.layers)}, stage_tokens {stored.tokens}); set the teacher cache "
                         "options stage_layers (and stage_tokens) and rerun teacher_cache")
    if logits and not stored.logits:
        raise CacheError(f"teacher cache {cache_dir} was built without the teacher's logits; set the teacher "
                         "cache option logits: true and rerun teacher_cache")


@dataclass
class StageResidues:
    """One sequence's per-residue stage targets (residues only, no CLS/EOS)."""

    layers: dict[int, torch.Tensor]  # teacher block -> (L_i, D)
    logits: torch.Tensor | None  # (L_i, 33), when asked for


class StageTokenTargets:
    """Per-residue stage targets of a complete cache built with ``stage_tokens`` (the vectors of
    ``layers``) and/or ``logits``, by sequence id."""

    def __init__(self, cache_dir: str | Path, layers: Sequence[int] = (), logits: bool = False):
        from safetensors import safe_open

        self.cache_dir, self.layers, self.logits = Path(cache_dir), tuple(layers), logits
        manifest = read_manifest(self.cache_dir)
        check_stages(self.cache_dir, manifest, self.layers, tokens=True, logits=logits)
        kinds = ([STAGES_KIND] if self.layers else []) + ([LOGITS_KIND] if logits else [])
        self.shard_of: dict[str, dict[str, str]] = {kind: {} for kind in kinds}  # kind -> key -> shard file
        for kind in kinds:
            for name in manifest[MANIFEST_LISTS[kind]]:
                with safe_open(str(self.cache_dir / name), framework="pt") as handle:
                    self.shard_of[kind].update(dict.fromkeys(handle.keys(), name))

    def get(self, ids: Iterable[str], dtype: torch.dtype = torch.float32) -> dict[str, StageResidues]:
        """``{id: StageResidues}`` for the requested ids; KeyError naming unknown ids."""
        ids = list(ids)
        unknown = [rid for rid in ids if any(key not in self.shard_of[kind] for kind, key in self._keys(rid))]
        if unknown:
            raise KeyError(f"teacher cache {self.cache_dir} has no stage targets for {len(unknown)} id(s), "
                           f"e.g. {', '.join(unknown[:5])}")
        found = self._read([key for rid in ids for key in self._keys(rid)], dtype)
        return {rid: StageResidues({x: found[STAGES_KIND, stage_key(x, rid)] for x in self.layers},
                                   found[LOGITS_KIND, rid] if self.logits else None) for rid in ids}

    def _keys(self, rid: str) -> list[tuple[str, str]]:
        """``(kind, key)`` of each tensor of sequence ``rid`` that this reader gives."""
        return [(STAGES_KIND, stage_key(x, rid)) for x in self.layers] + ([(LOGITS_KIND, rid)] if self.logits else [])

    def _read(self, wanted: list[tuple[str, str]], dtype: torch.dtype) -> dict[tuple[str, str], torch.Tensor]:
        from safetensors import safe_open

        by_file: dict[str, list[tuple[str, str]]] = {}
        for kind, key in wanted:
            by_file.setdefault(self.shard_of[kind][key], []).append((kind, key))
        out = {}
        for name, keys in by_file.items():
            with safe_open(str(self.cache_dir / name), framework="pt") as handle:
                for kind, key in keys:
                    out[kind, key] = handle.get_tensor(key).to(dtype)  # (L_i, W)
        return out


def load_stage_targets(
    cache_dir: str | Path, ids: Iterable[str], layers: Sequence[int] = (), logits: bool = False,
) -> dict[str, StageResidues]:
    """``{id: StageResidues}`` (float32) of a cache built with stage targets (see :class:`StageTokenTargets`)."""
    return StageTokenTargets(cache_dir, layers, logits).get(ids)


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
