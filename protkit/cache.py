"""Teacher embedding cache: ESMC outputs for every sequence, computed once, resumable.

Layout of a cache directory (docs/design.md, "Teacher cache"):

- ``fingerprint.json``: written first; ``{"fingerprint": hex, "fingerprint_parts": {...}}``.
- ``pooled-NNNNN.parquet``: shard ``k`` holds rows ``[k * shard_size, (k + 1) * shard_size)`` of the
  sequences table in its given order; columns ``id``, ``split`` and one fixed-size list of ``D``
  float16/float32 per pooling (``cls``, ``mean``). Schema metadata key ``protkit``: JSON
  ``{"fingerprint": hex, "rows_sha256": hex}`` (the latter over the shard's ids, sequences, splits).
- ``tokens-NNNNN.safetensors`` (``tokens=True``): one float16 tensor ``(L_i, D)`` per sequence, keyed
  by sequence id, residues only (no CLS/EOS), ``L_i = min(len, max_length - 2)``; the same
  ``protkit`` metadata entry (one key: safetensors stores metadata in hash order).
- ``manifest.json``: written last; its presence means the cache is complete.

A cache may also be built by several jobs, each embedding one part of the sequences
(``build_cache(..., part=(p, n))``, parts by :func:`sequence_parts`) and joined by
:func:`protkit.cache_parts.gather_cache_parts` into the same files as a single-job build.

Every file is written atomically, so an interrupted build leaves only complete shards. A rerun with
the same fingerprint keeps each shard whose fingerprint and rows digest match (so a changed
sequences table only recomputes the shards whose rows changed) and computes the rest; a directory
holding another fingerprint is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import protkit
from protkit.atomic import atomic_path, write_json
from protkit.batching import token_budget_batches
from protkit.device import resolve_device, resolve_dtype
from protkit.models.esmc import ESMC, ESMCConfig
from protkit.models.esmc_weights import file_sha256, load_esmc, random_esmc, resolve_weights, save_weights
from protkit.pooling import pool
from protkit.tokenize import PAD_ID, VOCAB, TokenBatch, encode_one, pad_batch

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")  # pooled targets; per-residue targets are the separate ``tokens`` flag
STORE_DTYPES: dict[str, tuple[pa.DataType, type]] = {
    "fp16": (pa.float16(), np.float16),
    "fp32": (pa.float32(), np.float32),
}
FINGERPRINT_FILE = "fingerprint.json"
MANIFEST_FILE = "manifest.json"
META_KEY = "protkit"  # shard metadata: JSON {"fingerprint": ..., "rows_sha256": ...}


class CacheError(RuntimeError):
    """A teacher cache that cannot be built or read; the message names the directory."""


class FingerprintMismatch(CacheError):
    """The directory holds a cache built with other weights or settings."""


@dataclass
class CachedTargets:
    ids: list[str]
    splits: np.ndarray  # (N,) str, "train"/"test"
    vectors: dict[str, np.ndarray]  # pooling -> (N, D) float32
    manifest: dict


def pooled_name(shard: int) -> str:
    return f"pooled-{shard:05d}.parquet"


def tokens_name(shard: int) -> str:
    return f"tokens-{shard:05d}.safetensors"


# --------------------------------------------------------------------------- fingerprint


def cache_fingerprint(
    weights_sha256: str, max_length: int, poolings: Iterable[str], store_dtype: str, tokens: bool
) -> tuple[str, dict]:
    """sha256 hex over everything that changes the cached numbers, and the parts themselves."""
    parts = {
        "weights_sha256": weights_sha256,
        "tokenizer_vocab": list(VOCAB),
        "max_length": int(max_length),
        "poolings": sorted(set(poolings)),
        "store_dtype": store_dtype,
        "tokens": bool(tokens),
        "protkit_version": protkit.__version__,
    }
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest(), parts


def sequence_parts(sequences: Iterable[str], nparts: int) -> np.ndarray:
    """The part (0 .. nparts - 1) of each sequence: the first 8 bytes of its sha256, modulo ``nparts``.

    A sequence keeps its part when other sequences are added or removed.
    """
    if nparts < 1:
        raise ValueError(f"the number of parts must be at least 1, got {nparts}")
    digests = (hashlib.sha256(s.encode("utf-8")).digest()[:8] for s in sequences)
    return np.fromiter((int.from_bytes(d, "big") % nparts for d in digests), dtype=np.int64)


def _check_directory(out_dir: Path, fingerprint: str, parts: dict) -> None:
    """Refuse a directory whose manifest.json or fingerprint.json records another fingerprint."""
    for name in (MANIFEST_FILE, FINGERPRINT_FILE):
        path = out_dir / name
        if path.exists():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            _check_fingerprint(out_dir, path, recorded.get("fingerprint"), fingerprint,
                               recorded.get("fingerprint_parts"), parts)


def _start_build(out_dir: Path, fingerprint: str, parts: dict) -> None:
    """Mark the directory incomplete (no manifest) and record the fingerprint of this build."""
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # incomplete until this build finishes
    for leftover in out_dir.glob(".*.tmp"):  # from a job killed mid-write (SIGKILL skips cleanup)
        leftover.unlink()
    write_json(out_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint, "fingerprint_parts": parts})


def _check_fingerprint(
    out_dir: Path, path: Path, found: str | None, expected: str,
    found_parts: dict | None = None, parts: dict | None = None,
) -> None:
    if found == expected:
        return
    changed = ""
    if found_parts and parts:
        diffs = [f"{k}: {found_parts.get(k)!r} -> {parts[k]!r}" for k in parts
                 if k != "tokenizer_vocab" and found_parts.get(k) != parts[k]]
        changed = f" (changed: {'; '.join(diffs)})" if diffs else ""
    raise FingerprintMismatch(
        f"teacher cache {out_dir}: {path.name} has fingerprint {found} but this run has fingerprint "
        f"{expected}{changed}. Refusing to mix caches: delete {out_dir} or write to another directory."
    )


# --------------------------------------------------------------------------- build


def build_cache(
    model: ESMC,
    sequences: pd.DataFrame,
    out_dir: str | Path,
    *,
    weights_sha256: str,
    teacher_name: str,
    dataset: str,
    max_length: int,
    max_tokens_per_batch: int,
    poolings: Sequence[str] = POOLINGS,
    store_dtype: str = "fp16",
    tokens: bool = False,
    shard_size: int = 4096,
    device: str | torch.device | None = None,
    part: tuple[int, int] | None = None,
) -> dict:
    """Embed every row of ``sequences`` (columns ``id``, ``sequence``, ``split``) with the teacher
    and write the cache to ``out_dir``; returns the manifest.

    ``max_length`` counts tokens including CLS and EOS (longer sequences lose C-terminal residues).
    ``device=None`` keeps the model where it is; otherwise the model moves to
    :func:`~protkit.device.resolve_device` of it.
    ``part=(p, n)`` embeds only the rows whose sequence falls in part ``p`` of ``n``
    (:func:`sequence_parts`; a part may be empty) and records ``"part": [p, n]`` in the manifest:
    one job of a scattered cache, joined by :func:`protkit.cache_parts.gather_cache_parts`.
    """
    poolings = _validate_build_args(sequences, max_length, max_tokens_per_batch, poolings, store_dtype, shard_size)
    table = tuple(sequences[column].astype(str).tolist() for column in ("id", "sequence", "split"))
    rows = _part_rows(table[1], part) if part else list(range(len(sequences)))  # the table rows built here
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint, parts = cache_fingerprint(weights_sha256, max_length, poolings, store_dtype, tokens)
    _check_directory(out_dir, fingerprint, parts)
    if device is not None:
        model.to(resolve_device(device) if isinstance(device, str) else device)
    model.eval()

    ids, seqs, splits = ([column[i] for i in rows] for column in table)
    shard_rows, digests, done = _prepare_directory(out_dir, fingerprint, parts, (ids, seqs, splits),
                                                   shard_size, tokens)
    n_shards = len(shard_rows)
    batches = None if all(done) else _SingleJobBatches(table[1], max_length, max_tokens_per_batch, shard_size)

    residues = [min(len(s), max_length - 2) for s in seqs]
    reused = sum(residues[i] for k in range(n_shards) if done[k] for i in shard_rows[k])
    desc = f"teacher cache {teacher_name}/{dataset}" + (f" part {part[0]}-of-{part[1]}" if part else "")
    progress = _Progress(sum(residues), reused, desc)
    with progress:
        for k in range(n_shards):
            if done[k]:
                continue
            shard = shard_rows[k]
            pooled, per_residue = _embed_shard(
                model, [seqs[i] for i in shard], batches.of([rows[i] for i in shard]), max_length, poolings,
                tokens, on_batch=progress.update,
            )
            meta = shard_metadata(fingerprint, digests[k])
            if tokens:
                _write_tokens(out_dir / tokens_name(k), [ids[i] for i in shard], per_residue, meta)
            _write_pooled(out_dir / pooled_name(k), [ids[i] for i in shard], [splits[i] for i in shard],
                          pooled, store_dtype, meta)

    manifest = {
        "fingerprint": fingerprint,
        "fingerprint_parts": parts,
        "teacher": teacher_name,
        "dataset": dataset,
        "d_model": model.config.d_model,
        "poolings": list(poolings),
        "store_dtype": store_dtype,
        "tokens": bool(tokens),
        "max_length": max_length,
        "n_sequences": len(ids),
        "shard_size": shard_size,
        **shard_lists(n_shards, tokens),
        **({"part": list(part)} if part else {}),
    }
    write_json(out_dir / MANIFEST_FILE, manifest)
    log.info("teacher cache %s: %d sequences in %d shards (%d reused), %d residues computed in %.1f s",
             out_dir, len(ids), n_shards, sum(done), progress.computed, progress.seconds)
    return manifest


def shard_lists(n_shards: int, tokens: bool) -> dict[str, list[str]]:
    """The manifest's ``shards`` and ``token_shards`` entries of a cache of ``n_shards`` shards."""
    return {"shards": [pooled_name(k) for k in range(n_shards)],
            "token_shards": [tokens_name(k) for k in range(n_shards)] if tokens else []}


def _part_rows(seqs: list[str], part: tuple[int, int]) -> list[int]:
    """The rows (indices into ``seqs``) in part ``part = (p, n)``, in table order."""
    index, count = part
    if not 0 <= index < count:
        raise ValueError(f"part must be (p, n) with 0 <= p < n, got {tuple(part)}")
    return np.flatnonzero(sequence_parts(seqs, count) == index).tolist()


class _SingleJobBatches:
    """The teacher batches of a single-job build of a whole table: shard by shard, rows of similar
    length under the token budget (:func:`~protkit.batching.token_budget_batches`).

    Every build, of the whole table or of a part, pads each row to the width of its batch here: a
    row's outputs depend on that width but not on the other rows of its batch (on the CPU, bit for
    bit), so parts gathered together equal a single-job build.
    """

    def __init__(self, seqs: list[str], max_length: int, max_tokens: int, shard_size: int):
        lengths = [len(encode_one(s, max_length)) for s in seqs]  # tokens, CLS and EOS included
        self.place = np.empty(len(seqs), dtype=np.int64)  # (N,) when the row is embedded
        self.batch = np.empty(len(seqs), dtype=np.int64)  # (N,) its batch
        self.widths: list[int] = []  # padded width of each batch
        placed = 0
        for start in range(0, len(seqs), shard_size):
            shard = lengths[start:start + shard_size]
            for members in token_budget_batches(shard, max_tokens):
                rows = [start + i for i in members]
                self.place[rows] = np.arange(placed, placed + len(rows))
                self.batch[rows] = len(self.widths)
                self.widths.append(max(shard[i] for i in members))
                placed += len(rows)

    def of(self, rows: Sequence[int]) -> list[tuple[list[int], int]]:
        """The batches of the table rows ``rows``: ``(indices into rows, padded width)``, in order."""
        rows = np.asarray(rows)
        order = np.argsort(self.place[rows], kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(self.batch[rows[order]])) + 1)
        return [(group.tolist(), self.widths[self.batch[rows[group[0]]]]) for group in groups]


def _prepare_directory(
    out_dir: Path, fingerprint: str, parts: dict, columns: tuple[list[str], list[str], list[str]],
    shard_size: int, tokens: bool,
) -> tuple[list[range], list[str], list[bool]]:
    """Shard rows, their digests and which shards ``out_dir`` already holds, for the table
    ``columns = (ids, sequences, splits)``; then marks the build started and removes shard files
    numbered beyond the table. Raises on a foreign fingerprint before touching anything."""
    ids, seqs, splits = columns
    n_shards = math.ceil(len(ids) / shard_size)
    shard_rows = [range(k * shard_size, min((k + 1) * shard_size, len(ids))) for k in range(n_shards)]
    digests = [_rows_digest(ids, seqs, splits, rows) for rows in shard_rows]
    done = [_shard_done(out_dir, k, fingerprint, digests[k], tokens) for k in range(n_shards)]
    extra = _extra_shards(out_dir, n_shards, fingerprint)
    _start_build(out_dir, fingerprint, parts)
    for path in extra:
        log.info("removing %s: the sequences table no longer has that shard", path)
        path.unlink()
    return shard_rows, digests, done


def shard_metadata(fingerprint: str, rows_sha256: str) -> dict[str, str]:
    """The ``protkit`` metadata entry of a shard file."""
    return {META_KEY: json.dumps({"fingerprint": fingerprint, "rows_sha256": rows_sha256}, sort_keys=True)}


class _Progress:
    """tqdm bar over residues with a residues/s postfix for the residues computed in this run."""

    def __init__(self, total: int, reused: int, desc: str):
        self.bar = tqdm(total=total, initial=reused, unit="res", unit_scale=True, desc=desc, disable=None)
        self.start = time.perf_counter()
        self.computed = 0

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def update(self, residues: int) -> None:
        self.computed += residues
        self.bar.update(residues)
        self.bar.set_postfix_str(f"{self.computed / max(self.seconds, 1e-9):,.0f} res/s", refresh=False)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _validate_build_args(
    sequences: pd.DataFrame, max_length: int, max_tokens_per_batch: int,
    poolings: Sequence[str], store_dtype: str, shard_size: int,
) -> tuple[str, ...]:
    """Checked arguments; returns the poolings sorted and de-duplicated."""
    missing = [c for c in ("id", "sequence", "split") if c not in sequences.columns]
    if missing:
        raise ValueError(f"sequences table lacks column(s) {', '.join(missing)}; has {', '.join(sequences.columns)}")
    if len(sequences) == 0:
        raise ValueError("sequences table is empty; nothing to cache")
    repeated = sequences["id"][sequences["id"].duplicated()]
    if len(repeated):
        raise ValueError(f"sequence ids must be unique for the teacher cache; repeated: {repeated.iloc[0]!r}")
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 tokens (CLS + 1 residue + EOS), got {max_length}")
    if max_tokens_per_batch < max_length:
        raise ValueError(f"max_tokens_per_batch ({max_tokens_per_batch}) must be >= max_length ({max_length})")
    unknown = [p for p in poolings if p not in POOLINGS]
    if unknown or not poolings:
        raise ValueError(f"poolings must be a non-empty subset of {', '.join(POOLINGS)}, got {list(poolings)} "
                         "(per-residue targets: tokens=True)")
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype must be one of {', '.join(STORE_DTYPES)}, got {store_dtype!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    return tuple(sorted(set(poolings)))


def _rows_digest(ids: list[str], seqs: list[str], splits: list[str], rows: Iterable[int]) -> str:
    digest = hashlib.sha256()
    for i in rows:
        digest.update(f"{ids[i]}\t{seqs[i]}\t{splits[i]}\n".encode("utf-8"))
    return digest.hexdigest()


def _file_metadata(path: Path) -> dict[str, str] | None:
    """protkit metadata (fingerprint, rows_sha256) of a shard file; None if missing or unreadable."""
    if not path.exists():
        return None
    try:
        if path.suffix == ".parquet":
            raw = (pq.read_schema(path).metadata or {}).get(META_KEY.encode(), b"{}").decode()
        else:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                raw = (handle.metadata() or {}).get(META_KEY, "{}")
        return json.loads(raw)
    except Exception as exc:  # a damaged file is recomputed, not trusted
        log.warning("%s is unreadable (%s); recomputing it", path, exc)
        return None


def _shard_done(out_dir: Path, shard: int, fingerprint: str, digest: str, tokens: bool) -> bool:
    """True if shard files exist for this fingerprint and these rows; raises on a foreign fingerprint."""
    names = [pooled_name(shard)] + ([tokens_name(shard)] if tokens else [])
    for name in names:
        meta = _file_metadata(out_dir / name)
        if meta is None:
            return False
        _check_fingerprint(out_dir, out_dir / name, meta.get("fingerprint"), fingerprint)
        if meta.get("rows_sha256") != digest:
            log.info("%s: rows of the sequences table changed; recomputing shard %d", out_dir, shard)
            return False
    return True


def _extra_shards(out_dir: Path, n_shards: int, fingerprint: str) -> list[Path]:
    """Shard files numbered beyond the current table (it shrank); raises on a foreign fingerprint."""
    expected = {pooled_name(k) for k in range(n_shards)} | {tokens_name(k) for k in range(n_shards)}
    extra = [p for p in sorted([*out_dir.glob("pooled-*.parquet"), *out_dir.glob("tokens-*.safetensors")])
             if p.name not in expected]
    for path in extra:
        meta = _file_metadata(path)
        if meta is not None:
            _check_fingerprint(out_dir, path, meta.get("fingerprint"), fingerprint)
    return extra


def _embed_shard(
    model: ESMC, seqs: list[str], batches: list[tuple[list[int], int]], max_length: int,
    poolings: Sequence[str], tokens: bool, on_batch: Callable[[int], None],
) -> tuple[dict[str, np.ndarray], list[torch.Tensor] | None]:
    """Pooled vectors ``{pooling: (n, D) float32}`` and, if ``tokens``, per-residue fp16 tensors,
    both in the order of ``seqs``; ``batches``: ``(indices into seqs, padded width)``."""
    token_lists = [encode_one(s, max_length) for s in seqs]
    dim = model.config.d_model
    pooled = {p: np.empty((len(seqs), dim), dtype=np.float32) for p in poolings}
    per_residue: list[torch.Tensor] | None = [torch.empty(0)] * len(seqs) if tokens else None
    for batch_rows, width in batches:
        batch = _padded([token_lists[i] for i in batch_rows], width).to(model.device)
        with torch.inference_mode():
            hidden = model(batch.input_ids, batch.attention_mask).last_hidden_state.float()  # (B, L, D)
            for p in poolings:
                pooled[p][batch_rows] = pool(hidden, batch.input_ids, batch.attention_mask, p).cpu().numpy()
            if per_residue is not None:
                for i, h in zip(batch_rows, pool(hidden, batch.input_ids, batch.attention_mask, "tokens")):
                    per_residue[i] = h.to(device="cpu", dtype=torch.float16)  # (L_i, D)
        on_batch(sum(len(token_lists[i]) - 2 for i in batch_rows))
    return pooled, per_residue


def _padded(token_lists: list[list[int]], width: int) -> TokenBatch:
    """``pad_batch`` of ``token_lists``, right-padded further to ``width`` tokens."""
    batch = pad_batch(token_lists)  # (B, L)
    extra = width - batch.input_ids.shape[1]
    if extra <= 0:
        return batch
    return TokenBatch(F.pad(batch.input_ids, (0, extra), value=PAD_ID),  # (B, width)
                      F.pad(batch.attention_mask, (0, extra), value=False))


def _write_pooled(
    path: Path, ids: list[str], splits: list[str], pooled: dict[str, np.ndarray],
    store_dtype: str, meta: dict[str, str],
) -> None:
    arrow_type, numpy_type = STORE_DTYPES[store_dtype]
    columns = {"id": pa.array(ids, pa.string()), "split": pa.array(splits, pa.string())}
    for name, vectors in pooled.items():  # (n, D)
        flat = pa.array(vectors.astype(numpy_type).ravel(), type=arrow_type)
        columns[name] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    table = pa.table(columns).replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_tokens(path: Path, ids: list[str], per_residue: list[torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({rid: t.contiguous() for rid, t in zip(ids, per_residue)}, str(tmp), metadata=meta)


# --------------------------------------------------------------------------- read


def read_manifest(cache_dir: str | Path) -> dict:
    """The manifest of a complete cache; CacheError if the build has not finished."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST_FILE
    if not path.exists():
        state = "an interrupted or unfinished build" if (cache_dir / FINGERPRINT_FILE).exists() else "no cache built"
        raise CacheError(f"cache incomplete: {path} does not exist ({state}); rerun teacher_cache")
    return json.loads(path.read_text(encoding="utf-8"))


def load_pooled(cache_dir: str | Path) -> CachedTargets:
    """All pooled teacher vectors of a complete cache, in sequences-table order, as float32."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    tables = []
    for name in manifest["shards"]:
        table = pq.read_table(cache_dir / name)
        found = json.loads((table.schema.metadata or {}).get(META_KEY.encode(), b"{}"))
        _check_fingerprint(cache_dir, cache_dir / name, found.get("fingerprint"), manifest["fingerprint"])
        tables.append(table)
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
    return {p: table.column(p).combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            for p in poolings}


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


# --------------------------------------------------------------------------- teacher


RANDOM_EXTRA_KEYS = {"seed", "qk_gain"}


def random_teacher_config(random: dict) -> tuple[ESMCConfig, int]:
    """ESMCConfig and seed from a ``random`` config section (ESMCConfig fields plus ``seed`` and
    ``qk_gain``, see :func:`~protkit.models.esmc_weights.random_esmc`)."""
    fields = set(ESMCConfig.__dataclass_fields__)
    unknown = sorted(set(random) - fields - RANDOM_EXTRA_KEYS)
    if unknown:
        raise ValueError(f"teacher random: unknown key(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(fields | RANDOM_EXTRA_KEYS))}")
    config = ESMCConfig(**{k: v for k, v in random.items() if k not in RANDOM_EXTRA_KEYS})
    return config, int(random.get("seed", 0))


def write_random_teacher(random: dict, path: str | Path) -> Path:
    """Write seeded random ESMC weights (offline demo teacher) described by ``random`` to ``path``."""
    config, seed = random_teacher_config(random)
    save_weights(random_esmc(config, seed, qk_gain=float(random.get("qk_gain", 1.0))), path)
    return Path(path)


def teacher_from_config(
    weights: str | Path,
    random: dict | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "fp32",
) -> tuple[ESMC, str]:
    """The eval-mode teacher and the sha256 of its weights file.

    ``weights``: a preset name (``esmc_300m``/``esmc_600m``, via the Hub cache), a weights file or
    a Hub-like directory. ``random``: the architecture of a random demo teacher whose weights file
    :func:`write_random_teacher` wrote (needed when its heads are not 64 wide).
    """
    try:
        path = resolve_weights(weights)
    except FileNotFoundError as exc:
        hint = " (a random demo teacher: write it first with protkit.cache.write_random_teacher)" if random else ""
        raise FileNotFoundError(f"{exc}{hint}") from exc
    config = random_teacher_config(random)[0] if random else None
    model = load_esmc(
        path,
        device=resolve_device(device) if isinstance(device, str) else device,
        dtype=resolve_dtype(dtype) if isinstance(dtype, str) else dtype,
        config=config,
    )
    return model, file_sha256(path)
