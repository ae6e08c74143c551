"""What the student learns: the training data (``DistillData``), its tokenized form
(:func:`encode_split`), the student's teacher-space output, the losses and the held-out cosine.

Objectives (``training.objective``):

- ``pooled``: for each configured pooling (``cls``/``mean``),
  ``cosine_weight * (1 - cos) + mse_weight * MSE`` between the student's pooled vectors in the
  teacher's width and the cached teacher vectors, averaged over the poolings (weighted by
  ``pooling_weights``: mean-pooled vectors sit much closer to their targets than CLS vectors, so
  with equal weights the CLS term dominates the gradient). The encoder runs
  once per batch and every pooling is taken from the same hidden states (the same vectors as
  ``ProtHash.embed_teacher``).
- ``tokens``: the same loss on every residue, against per-residue teacher targets.

Pooled targets are either arrays in memory or :class:`protkit.distill.rowfiles.RowFile` s on disk; a batch's
rows are read and converted to float32 when the batch is drawn, and sequences are tokenized then too,
so nothing per sequence is held beyond its token count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from protkit.distill.config import TrainConfig
from protkit.distill.rowfiles import RowFile, column_mean
from protkit.models.prothash.model import ProtHash
from protkit.sequences.batching import length_batches
from protkit.sequences.pooling import TOKENS, pool
from protkit.sequences.tokenize import FRAME_TOKENS, TokenBatch, encode_one, pad_batch, residue_count

Rows = Sequence[int] | np.ndarray  # row indices of one batch


@dataclass
class DistillData:
    """Sequences with their teacher targets, row-aligned.

    ``targets``: pooling -> ``(N, D)`` float32 array, or a :class:`~protkit.distill.rowfiles.RowFile` read a
    batch at a time; ``token_targets``: one ``(L_i, D)`` tensor per sequence (``L_i`` residues after
    truncation), needed by the ``tokens`` objective. ``sequences`` and ``ids`` may be any sequence
    (e.g. :class:`~protkit.distill.rowfiles.RaggedStrings`). ``lengths``: token counts (CLS/EOS included) at
    the training ``max_length`` when already known, and ``data_sha256``: :func:`protkit.distill.rowfiles.data_sha256`
    of ``sequences`` and ``targets`` when already computed (a store records both).
    """

    sequences: Sequence[str]
    targets: dict[str, np.ndarray | RowFile] = field(default_factory=dict)
    token_targets: list[torch.Tensor] | None = None
    ids: Sequence[str] | None = None
    lengths: np.ndarray | None = None
    data_sha256: str | None = None

    def __post_init__(self) -> None:
        n = len(self.sequences)
        for pooling, array in self.targets.items():
            if array.ndim != 2 or array.shape[0] != n:
                raise ValueError(f"{pooling} targets have shape {array.shape}, expected ({n}, D) for {n} sequences")
        if self.token_targets is not None and len(self.token_targets) != n:
            raise ValueError(f"{len(self.token_targets)} token targets for {n} sequences")
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"{len(self.ids)} ids for {n} sequences")
        if self.lengths is not None and len(self.lengths) != n:
            raise ValueError(f"{len(self.lengths)} lengths for {n} sequences")

    def __len__(self) -> int:
        return len(self.sequences)

    def name(self, index: int) -> str:
        return self.ids[index] if self.ids is not None else f"#{index}"


@dataclass
class EncodedSplit:
    """A split ready for training: its data, token counts and (once computed) target centres."""

    data: DistillData
    max_length: int
    lengths: np.ndarray  # (N,) token counts incl. CLS/EOS
    centers: dict[str, torch.Tensor] = field(default_factory=dict)

    def batch(self, rows: Rows, device: torch.device) -> TokenBatch:
        return pad_batch([encode_one(self.data.sequences[i], self.max_length) for i in rows]).to(device)

    def pooled_targets(self, rows: Rows, pooling: str, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.data.targets[pooling][rows], dtype=np.float32)).to(device)  # (B, D)

    def center(self, pooling: str, device: torch.device) -> torch.Tensor:
        """Mean target vector of this split for ``pooling`` (computed once).  # (D,)"""
        if pooling not in self.centers:
            mean = column_mean(self.data.targets[pooling]).astype(np.float32)
            self.centers[pooling] = torch.from_numpy(mean).to(device)
        return self.centers[pooling]

    def token_targets(self, rows: Rows, device: torch.device) -> torch.Tensor:
        assert self.data.token_targets is not None
        return torch.cat([self.data.token_targets[i] for i in rows]).to(device, torch.float32)  # (R, D)

    def residues(self, rows: Rows) -> int:
        return int(self.lengths[np.asarray(rows, dtype=np.int64)].sum()) - FRAME_TOKENS * len(rows)


def encode_split(
    data: DistillData, max_length: int, cfg: TrainConfig, teacher_dim: int, split: str, config_key: str
) -> EncodedSplit:
    """Token counts, and checks of the targets against the tokens and the model's teacher width."""
    if len(data) == 0:
        raise ValueError(f"the {split} split has no sequences; distillation needs both train and test sequences")
    lengths = data.lengths
    if lengths is None:
        lengths = np.array([len(encode_one(seq, max_length)) for seq in data.sequences], dtype=np.int64)
    for pooling in cfg.poolings if cfg.objective != "stages" else ():  # stages: protkit.distill.staged
        if pooling not in data.targets:
            raise ValueError(
                f"{split} targets lack pooling {pooling!r} (have: {', '.join(data.targets) or 'none'}); "
                f"set {config_key}.training.poolings to cached poolings"
            )
    for pooling, array in data.targets.items():
        if array.shape[1] != teacher_dim:
            raise ValueError(
                f"{split} {pooling} targets are {array.shape[1]}-wide but the student's teacher_dim is {teacher_dim}"
            )
    if cfg.objective == "tokens":
        if data.token_targets is None:
            raise ValueError(
                f"{config_key}.training.objective is 'tokens' but the {split} split has no per-residue targets "
                "(build the teacher cache with tokens enabled)"
            )
        for i, (length, target) in enumerate(zip(lengths.tolist(), data.token_targets)):
            if tuple(target.shape) != (residue_count(length), teacher_dim):
                raise ValueError(
                    f"sequence {data.name(i)}: per-residue targets have shape {tuple(target.shape)}, expected "
                    f"({residue_count(length)}, {teacher_dim}) at max_length {max_length}; the cache was built with "
                    "another max_length or teacher"
                )
    return EncodedSplit(data, max_length, np.asarray(lengths))


def teacher_space(model: ProtHash, batch: TokenBatch) -> torch.Tensor:
    """Student hidden states through the adapter.  # (B, L, teacher_dim)"""
    return model.adapter(model(batch.input_ids, batch.attention_mask))


def vector_loss(
    pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, center: torch.Tensor | None = None
) -> torch.Tensor:
    """``cosine_weight * (1 - cos) + mse_weight * MSE``. With ``center`` (the train-split mean target,
    ``(D,)``) the cosine compares ``pred - center`` with ``target - center``: teacher vectors share a large
    common direction, and raw cosine mostly rewards matching it; centred cosine puts the gradient on
    what distinguishes one protein from another (raw cosine still rises, and MSE keeps the offset)."""
    # pred, target: (N, D) float32
    if center is not None:
        cosine = F.cosine_similarity(pred - center, target - center, dim=-1)  # (N,)
    else:
        cosine = F.cosine_similarity(pred, target, dim=-1)  # (N,)
    return cfg.cosine_weight * (1.0 - cosine).mean() + cfg.mse_weight * F.mse_loss(pred, target)


def distill_loss(
    model: ProtHash, enc: EncodedSplit, rows: Rows, cfg: TrainConfig, device: torch.device, autocast: bool
) -> torch.Tensor:
    """The configured objective on one micro-batch (a scalar)."""
    batch = enc.batch(rows, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        hidden = teacher_space(model, batch)  # (B, L, T)
    hidden = hidden.float()
    if cfg.objective == "tokens":
        pred = torch.cat(pool(hidden, batch.input_ids, batch.attention_mask, TOKENS))  # (R, T)
        return vector_loss(pred, enc.token_targets(rows, device), cfg)
    losses = [
        cfg.pooling_weight(p) * vector_loss(
            pool(hidden, batch.input_ids, batch.attention_mask, p),
            enc.pooled_targets(rows, p, device),
            cfg,
            enc.center(p, device) if cfg.center_cosine else None,
        )
        for p in cfg.poolings
    ]
    return torch.stack(losses).sum() / sum(cfg.pooling_weight(p) for p in cfg.poolings)


@torch.no_grad()
def heldout_cosine(
    model: ProtHash, enc: EncodedSplit, cfg: TrainConfig, device: torch.device, autocast: bool
) -> dict[str, float]:
    """Mean cosine to the teacher per pooling over ``enc`` (eval mode); ``tokens`` = mean over
    sequences of the mean per-residue cosine, when per-residue targets are available."""
    was_training = model.training
    model.eval()
    with_tokens = cfg.objective == "tokens"
    sums = dict.fromkeys([*cfg.poolings, *(["tokens"] if with_tokens else [])], 0.0)
    for rows in length_batches(enc.lengths, cfg.batch_tokens, cfg.batch_size):
        batch = enc.batch(rows, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            hidden = teacher_space(model, batch)
        hidden = hidden.float()  # (B, L, T)
        for p in cfg.poolings:
            pred = pool(hidden, batch.input_ids, batch.attention_mask, p)  # (B, T)
            sums[p] += F.cosine_similarity(pred, enc.pooled_targets(rows, p, device), dim=-1).sum().item()
        if with_tokens:
            for pred, i in zip(pool(hidden, batch.input_ids, batch.attention_mask, TOKENS), rows):
                target = enc.data.token_targets[i].to(device, torch.float32)  # (L_i, T)
                sums["tokens"] += F.cosine_similarity(pred, target, dim=-1).mean().item()
    model.train(was_training)
    return {name: total / len(enc.lengths) for name, total in sums.items()}
