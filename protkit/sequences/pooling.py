"""Pooling of per-token hidden states into sequence vectors.

``cls``: position 0.  ``mean`` / ``max``: average / element-wise maximum over residues only (not
CLS, EOS or padding).  ``tokens``: one (L_i, D) tensor of residue vectors per sequence.
"""

from __future__ import annotations

import torch

from protkit.sequences.tokenize import residue_mask

POOLINGS = ("cls", "mean", "max")  # pooled vectors: embeddings, ONNX outputs, probes, search
TARGET_POOLINGS = ("cls", "mean")  # what a teacher cache stores and a pooled distillation learns
TOKENS = "tokens"  # per-residue vectors


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
    if pooling == TOKENS:
        return [h[m] for h, m in zip(hidden, residues)]
    raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join((*POOLINGS, TOKENS))}")
