"""Length-sorted batches under a token budget (padding-aware)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, max_batch_size: int | None = None
) -> list[list[int]]:
    """Group indices into batches of similar length whose padded size ``rows * longest`` stays
    within ``max_tokens`` (a single longer item still gets its own batch).

    ``lengths`` are token counts (CLS and EOS included). Batches come longest first, so the
    first batch shows at once whether memory suffices. Deterministic for equal inputs.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        width = max(longest, lengths[index])
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (width * (len(current) + 1) > max_tokens or too_many):
            batches.append(current)
            current, width = [], lengths[index]
        current.append(index)
        longest = width
    if current:
        batches.append(current)
    return batches


def length_batches(
    lengths: Sequence[int] | np.ndarray, max_tokens: int, max_batch_size: int | None = None
) -> list[np.ndarray]:
    """:func:`token_budget_batches` with numpy: the same batches (longest first,
    ties by index, ``rows * longest <= max_tokens``), as index arrays, without a Python object per row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    longest = lengths[order]
    batches, start = [], 0
    while start < len(order):
        size = max(1, max_tokens // int(longest[start]))
        if max_batch_size is not None:
            size = max(1, min(size, max_batch_size))
        batches.append(order[start : start + size])
        start += size
    return batches


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
