"""Pooling of per-token hidden states into sequence vectors.

``cls``: position 0.  Over residues only (not CLS, EOS or padding): ``mean`` / ``max`` (average /
element-wise maximum) and, as FastPLMs' ESM++ defines them, ``std`` / ``var`` (population standard
deviation / variance), ``median`` (the lower middle value for an even count, as torch's) and
``norm`` (L2 norm), each per dimension.  ``tokens``: one (L_i, D) tensor of residue vectors per sequence.
"""

from __future__ import annotations

from typing import Sequence

import torch

from protkit.sequences.tokenize import residue_mask

POOLINGS = ("cls", "mean", "max")  # pooled vectors: teacher cache, ONNX outputs, probes, search defaults
DISTRIBUTION_POOLINGS = ("std", "var", "median", "norm")  # statistics of the residues (protkit embed, torch)
EMBED_POOLINGS = POOLINGS + DISTRIBUTION_POOLINGS  # every pooling protkit embed writes
TARGET_POOLINGS = ("cls", "mean")  # what a teacher cache stores and a pooled distillation learns
LINEAR_POOLINGS = ("cls", "mean")  # commute with a linear (affine) head: pool(head(x)) == head(pool(x))
TOKENS = "tokens"  # per-residue vectors
CONCATENATION = "+"  # joins the poolings of one concatenated column: "mean+std"


def pool(
    hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, pooling: str
) -> torch.Tensor | list[torch.Tensor]:
    """Pool ``hidden (B, L, D)``; returns ``(B, D)`` or, for ``tokens``, a list of ``(L_i, D)``."""
    if pooling == "cls":
        return hidden[:, 0]  # (B, D)
    residues = residue_mask(input_ids, attention_mask)  # (B, L)
    if pooling == "mean":
        weights = residues.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        total = (hidden * weights).sum(dim=1)  # (B, D)
        return total / weights.sum(dim=1).clamp(min=1)
    if pooling == "max":
        lowest = torch.finfo(hidden.dtype).min
        return hidden.masked_fill(~residues.unsqueeze(-1), lowest).amax(dim=1)  # (B, D)
    if pooling in DISTRIBUTION_POOLINGS:
        return residue_statistic(hidden.float(), residues.unsqueeze(-1), pooling)  # (B, D)
    if pooling == TOKENS:
        return [h[m] for h, m in zip(hidden, residues)]
    raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join((*EMBED_POOLINGS, TOKENS))}")


def residue_statistic(x: torch.Tensor, keep: torch.Tensor, pooling: str) -> torch.Tensor:
    """``std``, ``var``, ``median`` or ``norm`` of ``x (B, L, D)`` over the positions ``keep (B, L, 1)``."""
    if pooling == "norm":
        return torch.linalg.vector_norm(x.masked_fill(~keep, 0), ord=2, dim=1)  # (B, D)
    if pooling == "median":
        return x.masked_fill(~keep, float("nan")).nanmedian(dim=1).values  # (B, D)
    count = keep.sum(dim=1).clamp(min=1)  # (B, 1)
    mean = x.masked_fill(~keep, 0).sum(dim=1) / count  # (B, D)
    var = ((x - mean.unsqueeze(1)).masked_fill(~keep, 0) ** 2).sum(dim=1) / count  # (B, D), population
    if pooling == "var":
        return var
    if pooling == "std":
        return var.sqrt()
    raise ValueError(f"unknown residue statistic {pooling!r}; choose from {', '.join(DISTRIBUTION_POOLINGS)}")


def concatenated_name(poolings: Sequence[str]) -> str:
    """The column of ``poolings`` concatenated in that order: ``("mean", "std")`` -> ``mean+std``."""
    return CONCATENATION.join(poolings)


def pooling_parts(name: str) -> tuple[str, ...]:
    """The poolings a column holds, in order: ``mean+std`` -> ``("mean", "std")``, ``mean`` -> ``("mean",)``."""
    return tuple(name.split(CONCATENATION))
