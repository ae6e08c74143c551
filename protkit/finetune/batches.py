"""Batches of examples: length-sorted, padded under a token budget
(:func:`protkit.sequences.batching.token_budget_batches`), tokenized as ``protkit embed`` does.

A training epoch's batches are a function of ``(seed, epoch)`` alone (equal lengths tied at random,
then the batch order shuffled), so a resumed run sees the batches an uninterrupted one sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from protkit.finetune.tasks import Example, LabelSpace
from protkit.hf.heads import IGNORE
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.tokenize import FRAME_TOKENS, encode_one, pad_batch, token_count


@dataclass(frozen=True)
class Batch:
    """Token ids, mask and labels of some examples (``rows``: their indices)."""

    rows: list[int]
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L) bool
    labels: torch.Tensor  # (B,) class ids or values, (B, K) 0/1 labels, or (B, L) per-token class ids

    def to(self, device: torch.device) -> Batch:
        return Batch(self.rows, self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def token_lengths(examples: Sequence[Example], max_length: int) -> list[int]:
    """Tokens per example once truncated to ``max_length`` (CLS and EOS included)."""
    return [min(token_count(len(e.sequence)), max_length) for e in examples]


def epoch_batches(lengths: Sequence[int], max_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """The training batches of ``epoch``: rows of similar length, in an order drawn from ``(seed, epoch)``."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))  # random ties among equal lengths
    batches = [[int(order[i]) for i in rows] for rows in token_budget_batches([lengths[i] for i in order], max_tokens)]
    return [batches[i] for i in rng.permutation(len(batches))]


def scoring_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Batches for scoring (no shuffling)."""
    return token_budget_batches(list(lengths), max_tokens)


def target_tensor(targets: Sequence, space: LabelSpace, width: int, shift: float = 0.0,
                  scale: float = 1.0) -> torch.Tensor:
    """The labels of a batch: class ids ``(B,)``, standardised values ``(B,)`` (``(value - shift) /
    scale``), 0/1 ``(B, K)``, or per-token class ids ``(B, width)`` with CLS, EOS, padding and
    residues past the truncation :data:`~protkit.hf.heads.IGNORE`."""
    if space.task == "classification":
        return torch.tensor(targets, dtype=torch.long)  # (B,)
    if space.task == "regression":
        return (torch.tensor(targets, dtype=torch.float64) - shift).div(scale).float()  # (B,)
    if space.task == "multilabel":
        return torch.tensor(targets, dtype=torch.float32)  # (B, K)
    labels = torch.full((len(targets), width), IGNORE, dtype=torch.long)  # (B, L)
    keep = width - FRAME_TOKENS  # residues between CLS and EOS of the longest row
    for row, per_residue in enumerate(targets):
        values = per_residue[:keep]
        labels[row, 1 : 1 + len(values)] = torch.tensor(values, dtype=torch.long)
    return labels


def make_batch(examples: Sequence[Example], rows: Sequence[int], space: LabelSpace, max_length: int,
               shift: float = 0.0, scale: float = 1.0) -> Batch:
    """The padded batch of ``examples[rows]`` (sequences truncated to ``max_length`` tokens)."""
    tokens = pad_batch([encode_one(examples[i].sequence, max_length) for i in rows])
    width = tokens.input_ids.shape[1]
    labels = target_tensor([examples[i].target for i in rows], space, width, shift, scale)
    return Batch(list(rows), tokens.input_ids, tokens.attention_mask, labels)
