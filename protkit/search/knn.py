"""Nearest neighbours by cosine on unit vectors (FAISS inner product), re-ranking and recall.

Every function takes L2-normalised float32 rows (:func:`protkit.search.vectors.normalise`), so inner
product is cosine. Missing neighbours (fewer than k vectors) have index -1 and score -inf.
"""

from __future__ import annotations

import numpy as np

QUERY_CHUNK = 4096  # queries per block when gathering candidate vectors


def exact_topk(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar database rows per query: scores (Q, k) float32, indices (Q, k) int64."""
    import faiss

    index = faiss.IndexFlatIP(database.shape[1])
    index.add(np.ascontiguousarray(database, dtype=np.float32))
    scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return mark_missing(scores, indices)


def rerank(database: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-order candidate rows (Q, C; -1 = none) by exact cosine and keep the best ``k`` per query."""
    q, c = candidates.shape
    k_out = min(k, c)
    scores_out = np.full((q, k_out), -np.inf, np.float32)
    indices_out = np.full((q, k_out), -1, np.int64)
    for start in range(0, q, QUERY_CHUNK):
        block = candidates[start:start + QUERY_CHUNK]  # (b, C)
        valid = block >= 0
        vectors = database[np.where(valid, block, 0)]  # (b, C, D)
        scores = np.einsum("bcd,bd->bc", vectors, queries[start:start + QUERY_CHUNK])
        scores = np.where(valid, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k_out]  # (b, k)
        scores_out[start:start + len(block)] = np.take_along_axis(scores, order, axis=1)
        chosen = np.take_along_axis(block, order, axis=1)
        indices_out[start:start + len(block)] = np.where(np.isfinite(scores_out[start:start + len(block)]), chosen, -1)
    return scores_out, indices_out


def recall_at_k(reference: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row's reference neighbours (Q, k) that ``found`` (Q, k') also lists."""
    shares = []
    for ref, got in zip(reference, found):
        ref = ref[ref >= 0]
        if len(ref):
            shares.append(len(np.intersect1d(ref, got[got >= 0])) / len(ref))
    return float(np.mean(shares)) if shares else float("nan")


def drop_self(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search results of a set against itself (Q = N, k + 1 columns) without each row's own index."""
    own = indices == np.arange(len(indices))[:, None]
    keep = ~own
    keep[own.sum(axis=1) == 0, -1] = False  # no self hit listed: drop the last column instead
    indices = indices[keep].reshape(len(indices), -1)[:, :k]
    scores = scores[keep].reshape(len(scores), -1)[:, :k]
    return indices, scores


def mark_missing(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS results with int64 indices and score -inf where no neighbour was found (index -1)."""
    indices = indices.astype(np.int64)
    return np.where(indices >= 0, scores, -np.inf).astype(np.float32), indices
