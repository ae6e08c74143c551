"""Vector hygiene: the rows of a vector set that cannot be searched, compared or clustered.

A row is unusable when it holds NaN or an infinity, is all zero (its cosine to anything is
undefined), is missing, or has another width than the set. :func:`unusable_rows` finds them in an
array, :func:`column_rows` in a parquet column (where rows of other widths can occur), and
:func:`describe_rows` names the first few by id for an error or a warning.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

SHOWN = 5  # ids named in a message


def unusable_rows(vectors: np.ndarray) -> dict[int, str]:
    """Row index -> reason (``NaN``, ``inf``, ``all zero``) for the unusable rows of ``vectors (N, D)``."""
    x = np.asarray(vectors)
    reasons: dict[int, str] = {}
    if x.ndim != 2 or not len(x):
        return reasons
    for reason, rows in (("NaN", np.isnan(x).any(axis=1)), ("inf", np.isinf(x).any(axis=1)),
                         ("all zero", ~x.any(axis=1))):
        for row in np.flatnonzero(rows).tolist():
            reasons.setdefault(row, reason)
    return reasons


def column_rows(column: pa.ChunkedArray | pa.Array, dim: int | None) -> tuple[np.ndarray, dict[int, str]]:
    """A column of vectors as ``(N, D)`` float32 (``D``: ``dim``, else the most common width) and the
    reasons of its unusable rows (missing, another width, NaN, inf, all zero); those rows are zeros."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    missing = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else np.zeros(n, bool)
    widths = np.where(missing, -1, column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)) \
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) \
        else np.where(missing, -1, column.type.list_size)
    if dim is None:
        present = widths[widths >= 0]
        dim = int(np.bincount(present).argmax()) if len(present) else 0
    reasons = {int(i): "missing" for i in np.flatnonzero(missing)}
    reasons.update({int(i): f"width {int(widths[i])} (expected {dim})" for i in np.flatnonzero((widths >= 0)
                                                                                             & (widths != dim))})
    good = np.flatnonzero(widths == dim)
    if len(good) == n and n:  # the usual case: every row present and as wide as the set
        out = column.flatten().to_numpy(zero_copy_only=False).reshape(n, dim).astype(np.float32, copy=False)
    else:
        out = np.zeros((n, dim), np.float32)
        if len(good):
            flat = column.take(pa.array(good)).flatten().to_numpy(zero_copy_only=False)
            out[good] = flat.reshape(len(good), dim)
    for row, reason in unusable_rows(out).items():
        reasons.setdefault(row, reason)
    return out, dict(sorted(reasons.items()))


def describe_rows(reasons: dict[int, str], ids: Sequence[str]) -> str:
    """``3 rows: P1 (NaN), P2 (all zero), P3 (width 7 (expected 8))``, the first :data:`SHOWN` of them."""
    shown = [f"{ids[row]} ({reason})" for row, reason in list(reasons.items())[:SHOWN]]
    more = f" and {len(reasons) - SHOWN} more" if len(reasons) > SHOWN else ""
    return f"{len(reasons)} row(s): {', '.join(shown)}{more}"


class UnusableVectors(ValueError):
    """Vectors a model or a file gave that cannot be compared (NaN, inf, all zero); names the ids."""


def require_usable(vectors: np.ndarray, ids: Sequence[str], what: str) -> None:
    """UnusableVectors naming the first bad rows of ``vectors (N, D)`` (``what``: whose vectors)."""
    bad = unusable_rows(vectors)
    if bad:
        raise UnusableVectors(f"{what}: unusable vectors in {describe_rows(bad, ids)}; a model that gives NaN or inf "
                              "overflowed (try fp32) or is damaged")
