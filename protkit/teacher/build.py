"""Building a teacher cache: ESMC outputs for every sequence, computed once, resumable.

The files and their rules are :mod:`protkit.teacher.layout`'s. Every file is written atomically, so
an interrupted build leaves only complete shards. A rerun with the same fingerprint keeps each shard
whose fingerprint and rows digest match (so a changed sequences table only recomputes the shards
whose rows changed) and computes the rest; a directory holding another fingerprint is refused.
A build may embed one part of the sequences (``part=(p, n)``): one job of a scattered cache, joined
by :func:`protkit.teacher.parts.gather_cache_parts` into the same files as a single-job build.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from protkit.io.atomic import write_json
from protkit.io.columns import STORE_DTYPES
from protkit.io.outputs import claim_outputs
from protkit.io.progress import progress_bar
from protkit.models.device import resolve_device
from protkit.models.esmc.model import ESMC
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.pooling import TARGET_POOLINGS, TOKENS, pool
from protkit.sequences.tokenize import PAD_ID, TokenBatch, embedded_residues, encode_one, pad_batch, residue_count
from protkit.teacher.layout import (
    MANIFEST_FILE, cache_fingerprint, check_directory, part_rows, pooled_name, shard_lists, tokens_name,
)  # fmt: skip
from protkit.teacher.shards import Columns, prepare_directory, shard_metadata, write_pooled, write_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Build:
    """What one build writes where: the settings every shard shares."""

    out_dir: Path
    fingerprint: str
    max_length: int
    max_tokens: int
    poolings: tuple[str, ...]
    store_dtype: str
    tokens: bool
    shard_size: int


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
    poolings: Sequence[str] = TARGET_POOLINGS,
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
    :func:`~protkit.models.device.resolve_device` of it.
    ``part=(p, n)`` embeds only the rows whose sequence falls in part ``p`` of ``n``
    (:func:`~protkit.teacher.layout.sequence_parts`; a part may be empty) and records
    ``"part": [p, n]`` in the manifest.
    """
    poolings = _validate_build_args(sequences, max_length, max_tokens_per_batch, poolings, store_dtype, shard_size)
    with claim_outputs(directories=[out_dir]):  # one writer; a disk error names the cache
        table: Columns = tuple(sequences[column].astype(str).tolist() for column in ("id", "sequence", "split"))
        rows = part_rows(table[1], part) if part else list(range(len(sequences)))  # the table rows built here
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        fingerprint, parts = cache_fingerprint(weights_sha256, max_length, poolings, store_dtype, tokens)
        check_directory(out_dir, fingerprint, parts)
        if device is not None:
            model.to(resolve_device(device) if isinstance(device, str) else device)
        model.eval()

        columns: Columns = tuple([column[i] for i in rows] for column in table)
        shard_rows, digests, done = prepare_directory(out_dir, fingerprint, parts, columns, shard_size, tokens)
        build = _Build(out_dir, fingerprint, max_length, max_tokens_per_batch, poolings, store_dtype, tokens, shard_size)
        desc = f"teacher cache {teacher_name}/{dataset}" + (f" part {part[0]}-of-{part[1]}" if part else "")
        progress = _embed_shards(model, build, table[1], rows, columns, shard_rows, digests, done, desc)

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
            "n_sequences": len(rows),
            "shard_size": shard_size,
            **shard_lists(len(shard_rows), tokens),
            **({"part": list(part)} if part else {}),
        }
        write_json(out_dir / MANIFEST_FILE, manifest)
        log.info("teacher cache %s: %d sequences in %d shards (%d reused), %d residues computed in %.1f s",
                 out_dir, len(rows), len(shard_rows), sum(done), progress.computed, progress.seconds)
        return manifest


def _embed_shards(
    model: ESMC, build: _Build, table_seqs: list[str], rows: list[int], columns: Columns,
    shard_rows: list[range], digests: list[str], done: list[bool], desc: str,
) -> "_Progress":
    """Embed and write every shard not ``done``; ``rows``: the table rows of ``columns``' entries."""
    ids, seqs, splits = columns
    batches = None if all(done) else _SingleJobBatches(table_seqs, build.max_length, build.max_tokens,
                                                          build.shard_size)
    residues = [embedded_residues(len(s), build.max_length) for s in seqs]
    reused = sum(residues[i] for k, shard in enumerate(shard_rows) if done[k] for i in shard)
    with _Progress(sum(residues), reused, desc) as progress:
        for k, shard in enumerate(shard_rows):
            if done[k]:
                continue
            pooled, per_residue = _embed_shard(
                model, [seqs[i] for i in shard], batches.of([rows[i] for i in shard]), build.max_length,
                build.poolings, build.tokens, on_batch=progress.update,
            )
            meta = shard_metadata(build.fingerprint, digests[k])
            if build.tokens:
                write_tokens(build.out_dir / tokens_name(k), [ids[i] for i in shard], per_residue, meta)
            write_pooled(build.out_dir / pooled_name(k), [ids[i] for i in shard], [splits[i] for i in shard],
                         pooled, build.store_dtype, meta)
    return progress


class _SingleJobBatches:
    """The teacher batches of a single-job build of a whole table: shard by shard, rows of similar
    length under the token budget (:func:`~protkit.sequences.batching.token_budget_batches`).

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


class _Progress:
    """tqdm bar over residues with a residues/s postfix for the residues computed in this run."""

    def __init__(self, total: int, reused: int, desc: str):
        self.bar = progress_bar(total=total, initial=reused, unit="res", unit_scale=True, desc=desc)
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
    unknown = [p for p in poolings if p not in TARGET_POOLINGS]
    if unknown or not poolings:
        raise ValueError(f"poolings must be a non-empty subset of {', '.join(TARGET_POOLINGS)}, got {list(poolings)} "
                         "(per-residue targets: tokens=True)")
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype must be one of {', '.join(STORE_DTYPES)}, got {store_dtype!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    return tuple(sorted(set(poolings)))


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
                for i, h in zip(batch_rows, pool(hidden, batch.input_ids, batch.attention_mask, TOKENS)):
                    per_residue[i] = h.to(device="cpu", dtype=torch.float16)  # (L_i, D)
        on_batch(sum(residue_count(len(token_lists[i])) for i in batch_rows))
    return pooled, per_residue


def _padded(token_lists: list[list[int]], width: int) -> TokenBatch:
    """``pad_batch`` of ``token_lists``, right-padded further to ``width`` tokens."""
    batch = pad_batch(token_lists)  # (B, L)
    extra = width - batch.input_ids.shape[1]
    if extra <= 0:
        return batch
    return TokenBatch(F.pad(batch.input_ids, (0, extra), value=PAD_ID),  # (B, width)
                      F.pad(batch.attention_mask, (0, extra), value=False))
