"""The task heads' arithmetic that every exported model shares: pooling for a per-protein head,
and the loss of a head's logits for a ``problem_type`` as Hugging Face's models infer it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from protkit.sequences.pooling import pool

IGNORE = -100  # a label that takes no part in the loss (Hugging Face's convention)


def problem_type(configured: str | None, num_labels: int, labels: torch.Tensor) -> str:
    """``regression`` for one label, ``single_label_classification`` for integer labels, else
    ``multi_label_classification`` (``configured`` wins when set), as transformers infers it."""
    if configured:
        return configured
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def head_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The loss of ``logits (..., C)`` against ``labels``; labels equal to :data:`IGNORE` (a whole row
    for multi-label, one value otherwise) take no part."""
    num_labels = logits.shape[-1]
    if kind == "single_label_classification":
        return F.cross_entropy(logits.reshape(-1, num_labels).float(), labels.reshape(-1).long(), ignore_index=IGNORE)
    if kind == "regression":
        predicted = logits.reshape(-1).float() if num_labels == 1 else logits.reshape(-1, num_labels).float()
        target = labels.reshape(predicted.shape).float()
        keep = target != IGNORE if num_labels == 1 else (target != IGNORE).all(dim=-1)
        return F.mse_loss(predicted[keep], target[keep])
    if kind == "multi_label_classification":
        predicted, target = logits.reshape(-1, num_labels).float(), labels.reshape(-1, num_labels).float()
        keep = (target != IGNORE).all(dim=-1)
        return F.binary_cross_entropy_with_logits(predicted[keep], target[keep])
    raise ValueError(f"unknown problem_type {kind!r}")


def protein_vectors(hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One vector per protein for a per-protein head: the mean over its residues.  # (B, D)"""
    return pool(hidden, input_ids, attention_mask, "mean")
