"""Throughput of a model: residues per second of a forward pass plus mean pooling."""

from __future__ import annotations

import time
from typing import Sequence

import torch

from protkit.embed.embedder import Forward, pooled_embeddings
from protkit.sequences.tokenize import residue_count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    forward: Forward, token_lists: Sequence[Sequence[int]], dim: int, max_tokens: int, device: torch.device
) -> dict:
    """Residues/s of ``forward`` + mean pooling over ``token_lists`` (after one warm-up batch)."""
    warm = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))[:1]
    pooled_embeddings(forward, [token_lists[i] for i in warm], ["mean"], dim, max_tokens, device, desc="warm-up")
    _sync(device)
    start = time.perf_counter()
    pooled_embeddings(forward, token_lists, ["mean"], dim, max_tokens, device, desc="throughput")
    _sync(device)
    seconds = time.perf_counter() - start
    residues = sum(residue_count(len(t)) for t in token_lists)
    return {"sequences": len(token_lists), "residues": residues, "seconds": seconds,
            "residues_per_s": residues / seconds if seconds > 0 else None}
