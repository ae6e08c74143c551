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
from protkit.models.device import precision_of, resolve_device
from protkit.models.esmc.model import ESMC
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.pooling import TARGET_POOLINGS, TOKENS, pool
from protkit.sequences.tokenize import PAD_ID, TokenBatch, embedded_residues, encode_one, pad_batch, residue_count
from protkit.teacher.layout import (
    LOGITS_KIND, MANIFEST_FILE, STAGE_POOLING, TOKENS_KIND, CacheError, StageOptions, cache_fingerprint,
    check_directory, layer_column, part_rows, pooled_name, shard_lists, tensor_keys, tensor_kinds, tensor_name,
)  # fmt: skip
from protkit.teacher.shards import Columns, prepare_directory, shard_metadata, write_pooled, write_tensors
from protkit.teacher.stage_targets import StageTargets, check_stage_layers, stage_targets

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
    stages: StageOptions

    @property
    def kinds(self) -> tuple[str, ...]:
        """The per-residue shard files of this build (:func:`~protkit.teacher.layout.tensor_kinds`)."""
        return tensor_kinds(self.tokens, self.stages)


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
    stage_layers: Sequence[int] | None = None,
    stage_tokens: bool = False,
    logits: bool = False,
) -> dict:
    """Embed every row of ``sequences`` (columns ``id``, ``sequence``, ``split``) with the teacher
    and write the cache to ``out_dir``; returns the manifest.

    ``max_length`` counts tokens including CLS and EOS (longer sequences lose C-terminal residues).
    ``device=None`` keeps the model where it is; otherwise the model moves to
    :func:`~protkit.models.device.resolve_device` of it.
    ``part=(p, n)`` embeds only the rows whose sequence falls in part ``p`` of ``n``
    (:func:`~protkit.teacher.layout.sequence_parts`; a part may be empty) and records
    ``"part": [p, n]`` in the manifest.

    ProtHash 1.0's stage targets (:mod:`protkit.teacher.stage_targets`; off by default):
    ``stage_layers`` (0-based teacher blocks) adds a ``layer{l}_mean`` pooled column per block;
    ``stage_tokens`` also stores their per-residue vectors, ``logits`` the per-residue MLM logits
    (33 wide), both float16 (layout: :mod:`protkit.teacher.layout`).
    """
    poolings = _validate_build_args(sequences, max_length, max_tokens_per_batch, poolings, store_dtype, shard_size)
    stages = _stage_options(stage_layers, stage_tokens, logits, model.config.n_layers)
    with claim_outputs(directories=[out_dir]):  # one writer; a disk error names the cache
        table: Columns = tuple(sequences[column].astype(str).tolist() for column in ("id", "sequence", "split"))
        rows = part_rows(table[1], part) if part else list(range(len(sequences)))  # the table rows built here
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        precision = precision_of(next(model.parameters()).dtype)
        fingerprint, parts = cache_fingerprint(weights_sha256, max_length, poolings, store_dtype, tokens, stages,
                                               precision)
        check_directory(out_dir, fingerprint, parts)
        if device is not None:
            model.to(resolve_device(device) if isinstance(device, str) else device)
        model.eval()

        columns: Columns = tuple([column[i] for i in rows] for column in table)
        build = _Build(out_dir, fingerprint, max_length, max_tokens_per_batch, poolings, store_dtype, tokens,
                       shard_size, stages)
        shard_rows, digests, done = prepare_directory(out_dir, fingerprint, parts, columns, shard_size, build.kinds)
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
            "precision": precision,
            "max_length": max_length,
            "n_sequences": len(rows),
            "shard_size": shard_size,
            **shard_lists(len(shard_rows), tokens, stages),
            **stages.entries(),
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
                model, build, [ids[i] for i in shard], [seqs[i] for i in shard], batches.of([rows[i] for i in shard]),
                on_batch=progress.update,
            )
            meta = shard_metadata(build.fingerprint, digests[k])
            for kind, named in per_residue.items():
                write_tensors(build.out_dir / tensor_name(kind, k), named, meta)
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


def _stage_options(layers: Sequence[int] | None, tokens: bool, logits: bool, n_layers: int) -> StageOptions:
    """Checked stage options: layers within the teacher's ``n_layers`` blocks, sorted, no repeats."""
    if tokens and not layers:
        raise ValueError("stage_tokens stores the per-residue vectors of the stage layers: set stage_layers too")
    chosen = tuple(sorted(set(check_stage_layers(layers, n_layers)))) if layers else ()
    return StageOptions(chosen, bool(tokens), bool(logits))


def _embed_shard(
    model: ESMC, build: _Build, ids: list[str], seqs: list[str], batches: list[tuple[list[int], int]],
    on_batch: Callable[[int], None],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, torch.Tensor]]]:
    """Pooled vectors ``{column: (n, D) float32}`` and the per-residue fp16 tensors of each kind of
    ``build.kinds`` (``{kind: {key: (L_i, W)}}``, keys in the order of ``ids``); ``batches``:
    ``(indices into seqs, padded width)``."""
    token_lists = [encode_one(s, build.max_length) for s in seqs]
    dim = model.config.d_model
    pooled = {c: np.empty((len(seqs), dim), dtype=np.float32) for c in (*build.poolings, *build.stages.columns)}
    rows: dict[str, list[dict[str, torch.Tensor]]] = {kind: [{}] * len(seqs) for kind in build.kinds}
    pooled_type = torch.float16 if build.store_dtype == "fp16" else torch.float32
    for batch_rows, width in batches:
        batch = _padded([token_lists[i] for i in batch_rows], width).to(model.device)
        with torch.inference_mode():
            hidden, targets = _forward(model, batch, build.stages)  # (B, L, D) float32
            for p in build.poolings:
                pooled[p][batch_rows] = pool(hidden, batch.input_ids, batch.attention_mask, p).cpu().numpy()
            for layer, h in zip(build.stages.layers, targets.hidden if targets else []):
                mean = pool(h.float(), batch.input_ids, batch.attention_mask, STAGE_POOLING)  # (B, D)
                stored = _stored(mean, pooled_type, build, f"layer {layer}")
                pooled[layer_column(layer)][batch_rows] = stored.cpu().numpy()
            for kind in build.kinds:
                for i, tensors in zip(batch_rows, _residue_tensors(kind, hidden, targets, batch, build)):
                    rows[kind][i] = dict(zip(tensor_keys(kind, ids[i], build.stages.layers), tensors))
        on_batch(sum(residue_count(len(token_lists[i])) for i in batch_rows))
    return pooled, {kind: {k: t for named in per_row for k, t in named.items()} for kind, per_row in rows.items()}


def _forward(model: ESMC, batch: TokenBatch, stages: StageOptions) -> tuple[torch.Tensor, StageTargets | None]:
    """The last hidden state ``(B, L, D)`` as float32 and, when the build stores stages, the stage targets."""
    if not stages.enabled:
        return model(batch.input_ids, batch.attention_mask).last_hidden_state.float(), None
    targets = stage_targets(model, batch, stages.layers)
    return targets.last_hidden_state.float(), targets


def _residue_tensors(
    kind: str, hidden: torch.Tensor, targets: StageTargets | None, batch: TokenBatch, build: _Build,
) -> list[list[torch.Tensor]]:
    """Per row of ``batch``, its residues' fp16 CPU tensors of ``kind`` in the order of
    :func:`~protkit.teacher.layout.tensor_keys`."""
    def residues(x: torch.Tensor) -> list[torch.Tensor]:  # (B, L, W) -> B x (L_i, W) float16
        return [h.to(device="cpu", dtype=torch.float16) for h in pool(x, batch.input_ids, batch.attention_mask, TOKENS)]

    if kind == TOKENS_KIND:
        return [[h] for h in residues(hidden)]
    if kind == LOGITS_KIND:
        return [[h] for h in residues(_stored(targets.logits, torch.float16, build, "logits"))]
    per_layer = [residues(_stored(h, torch.float16, build, f"layer {layer}"))
                 for layer, h in zip(targets.layers, targets.hidden)]
    return [list(tensors) for tensors in zip(*per_layer)]


def _stored(x: torch.Tensor, dtype: torch.dtype, build: _Build, what: str) -> torch.Tensor:
    """``x`` as ``dtype``; CacheError if that holds inf or NaN (beyond float16's range, 65504)."""
    x = x.to(dtype)
    if not bool(torch.isfinite(x).all()):
        raise CacheError(f"teacher cache {build.out_dir}: the teacher's {what} holds values beyond {dtype}'s range "
                         "(or NaN), so it cannot be stored (pooled: store_dtype fp32; per-residue stage targets "
                         "are float16: compute them on the fly, protkit.teacher.stage_targets)")
    return x


def _padded(token_lists: list[list[int]], width: int) -> TokenBatch:
    """``pad_batch`` of ``token_lists``, right-padded further to ``width`` tokens."""
    batch = pad_batch(token_lists)  # (B, L)
    extra = width - batch.input_ids.shape[1]
    if extra <= 0:
        return batch
    return TokenBatch(F.pad(batch.input_ids, (0, extra), value=PAD_ID),  # (B, width)
                      F.pad(batch.attention_mask, (0, extra), value=False))
