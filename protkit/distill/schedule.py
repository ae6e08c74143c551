"""The order and pace of a distillation: learning-rate schedule, optimizer and the data order.

AdamW (no weight decay on 1-D parameters: norms, biases), linear warm-up then cosine decay. Each
epoch draws a new length-bucketed batching (random tie-breaks among equal lengths) and a new batch
order from a numpy generator seeded with ``(seed, epoch)``, so the data order is a pure function of
``(seed, epoch, batch index)`` and needs no generator state. Epochs repeat until ``max_steps``.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch

from protkit.distill.config import TrainConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.batching import length_batches


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based): linear warm-up over
    ``warmup_steps`` steps to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_batches(lengths: Sequence[int] | np.ndarray, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    """Length-bucketed micro-batches for ``epoch``, in a shuffled order (a function of seed and epoch)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(len(lengths))  # random tie-breaks among equal lengths
    batches = [perm[b] for b in length_batches(np.asarray(lengths)[perm], cfg.batch_tokens, cfg.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_stream(
    lengths: np.ndarray, cfg: TrainConfig, epoch: int, index: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Endless ``(epoch, batch index, rows)`` from a data position, epoch after epoch."""
    while True:
        batches = epoch_batches(lengths, cfg, epoch)
        for i in range(index, len(batches)):
            yield epoch, i, batches[i]
        epoch, index = epoch + 1, 0


def build_optimizer(model: ProtHash, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then cosine decay (:func:`lr_factor`), stepped once per optimizer step."""
    def factor(step: int) -> float:
        return lr_factor(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
