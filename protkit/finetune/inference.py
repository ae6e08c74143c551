"""Running a model over proteins in padded, length-sorted batches (no gradients): the fine-tuned
head's outputs (validation, test, ``protkit predict``) and the frozen base model's vectors (the probe)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from protkit.finetune.batches import scoring_batches
from protkit.sequences.pooling import TOKENS, pool
from protkit.sequences.tokenize import TokenBatch, encode_one, pad_batch, token_count

Forward = Callable[[TokenBatch], list[np.ndarray]]  # a batch -> one array per row
Select = Callable[[int, np.ndarray], np.ndarray]  # (sequence index, its array) -> what to keep of it


def run_batches(forward: Forward, sequences: Sequence[str], max_length: int, max_tokens: int,
                device: torch.device, select: Select | None = None) -> list[np.ndarray]:
    """``forward``'s arrays for every sequence (truncated to ``max_length`` tokens), in input order;
    ``select`` keeps part of each (so per-residue vectors need not all be held)."""
    lengths = [min(token_count(len(s)), max_length) for s in sequences]
    outputs: list[np.ndarray | None] = [None] * len(sequences)
    with torch.no_grad():
        for rows in scoring_batches(lengths, max_tokens):
            batch = pad_batch([encode_one(sequences[i], max_length) for i in rows]).to(device)
            for i, array in zip(rows, forward(batch)):
                outputs[i] = array if select is None else select(i, array)
    return outputs


def head_forward(model: nn.Module, per_residue: bool) -> Forward:
    """A task head's logits: ``(C,)`` per protein, or ``(L_i, C)`` over each protein's residues."""
    def forward(batch: TokenBatch) -> list[np.ndarray]:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float().cpu()
        if not per_residue:
            return list(logits.numpy())  # (B, C) -> B x (C,)
        return [row[1 : n - 1].numpy() for row, n in zip(logits, batch.lengths.tolist())]  # (L_i, C), CLS/EOS off

    return forward


def head_outputs(model: nn.Module, sequences: Sequence[str], per_residue: bool, max_length: int, max_tokens: int,
                 device: torch.device) -> list[np.ndarray]:
    """Logits of a task head for every sequence (eval mode; the model's mode is restored)."""
    training = model.training
    model.eval()
    try:
        return run_batches(head_forward(model, per_residue), sequences, max_length, max_tokens, device)
    finally:
        model.train(training)


def frozen_forward(base: nn.Module, per_residue: bool) -> Forward:
    """The frozen model's vectors: a student's ``embed_teacher`` (the vectors ``protkit embed``
    writes), the teacher's last hidden states; mean over residues, or per residue."""
    pooling = TOKENS if per_residue else "mean"

    def forward(batch: TokenBatch) -> list[np.ndarray]:
        if hasattr(base, "embed_teacher"):
            vectors = base.embed_teacher(batch.input_ids, batch.attention_mask, pooling)
        else:
            hidden = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
            vectors = pool(hidden, batch.input_ids, batch.attention_mask, pooling)  # (B, D) or B x (L_i, D)
        return [v.float().cpu().numpy() for v in vectors]

    return forward
