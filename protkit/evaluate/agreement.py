"""Neighbour agreement between two vector spaces over the same proteins: how many of each
protein's k nearest neighbours (cosine, the set searched against itself, self excluded) one space
shares with another, exactly or through binary LSH codes.

:func:`neighbour_recall` compares float spaces (the teacher's against a student's).
:func:`lsh_agreement` hashes a student's vectors at several bit counts and asks how well Hamming
search (alone, and as ``protkit search`` uses it: Hamming candidates re-ranked by cosine) finds
the teacher's and the student's own neighbours. The hasher is centred on the vectors it
indexes (the searched set), as an index built from those vectors would be, and its planes are
chosen as ``protkit hash`` chooses them (``auto``: ITQ up to the vectors' width, random above).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from protkit.search.knn import drop_self, exact_topk, recall_at_k
from protkit.search.lsh import BIT_CHOICES, CANDIDATE_FACTOR, Hasher, fit_hasher, lsh_search
from protkit.search.vectors import normalise

QUERY_BLOCK = 512  # queries per LSH search call: bounds the (block, candidates, D) re-rank gather


def self_neighbours(unit: np.ndarray, k: int) -> np.ndarray:
    """Each unit row's ``k`` nearest other rows by cosine.  # (N, k)"""
    scores, indices = exact_topk(unit, unit, k + 1)
    return drop_self(indices, scores, k)[0]


def neighbour_recall(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float | None:
    """Mean share of each row's ``k`` nearest neighbours in ``reference`` space (N, D) that are
    also among its ``k`` nearest in ``candidate`` space (N, D'); k is capped at N - 1, None if N < 2."""
    k = min(k, len(reference) - 1)
    if k < 1:
        return None
    return recall_at_k(self_neighbours(normalise(reference), k), self_neighbours(normalise(candidate), k))


def lsh_self_neighbours(unit: np.ndarray, hasher: Hasher, codes: np.ndarray, k: int, rerank: bool) -> np.ndarray:
    """Each unit row's ``k`` nearest other rows by LSH search of the set's own ``codes`` (N, bits / 8):
    Hamming only, or (``rerank``) Hamming candidates re-ranked by cosine.  # (N, k)"""
    out = np.empty((len(unit), k), np.int64)
    for start in range(0, len(unit), QUERY_BLOCK):
        queries = unit[start:start + QUERY_BLOCK]  # (b, D)
        scores, indices = lsh_search(hasher, codes, queries, k + 1, unit if rerank else None, CANDIDATE_FACTOR)
        # drop_self knows a row's own index as its row number in the block: shift by the block start
        # (missing neighbours, -1, come back as -1)
        out[start:start + len(queries)] = drop_self(indices - start, scores, k)[0] + start
    return out


def lsh_agreement(
    teacher: np.ndarray, student: np.ndarray, k: int = 10, bits: Sequence[int] = BIT_CHOICES, seed: int = 0
) -> list[dict]:
    """Per bit count: recall@k of the teacher's neighbours and of the student's own (float)
    neighbours when the student's vectors (N, D) are searched as LSH codes (self excluded)."""
    k = min(k, len(student) - 1)
    if k < 1:
        return []
    unit = normalise(student)  # (N, D)
    teacher_nn, student_nn = self_neighbours(normalise(teacher), k), self_neighbours(unit, k)
    rows = []
    for b in bits:
        hasher = fit_hasher(unit, int(b), seed)  # planes as protkit hash picks them
        codes = hasher.encode(unit)  # (N, bits / 8)
        hamming = lsh_self_neighbours(unit, hasher, codes, k, rerank=False)
        reranked = lsh_self_neighbours(unit, hasher, codes, k, rerank=True)
        rows.append({
            "bits": int(b),
            "bytes": int(b) // 8,
            "method": hasher.method,
            "teacher_recall": recall_at_k(teacher_nn, hamming),
            "student_recall_hamming": recall_at_k(student_nn, hamming),
            "student_recall_reranked": recall_at_k(student_nn, reranked),
        })
    return rows


def stored_recall(teacher: np.ndarray, vectors: dict[str, np.ndarray], k: int = 10) -> list[dict]:
    """Recall@k of the teacher's neighbours by float vectors kept as fp32 (4 bytes a value) and as
    fp16 (2 bytes), per model of ``vectors`` ({model: (N, D)})."""
    rows = []
    for model, x in vectors.items():
        for dtype, width in (("fp32", 4), ("fp16", 2)):
            stored = x.astype(np.float32) if dtype == "fp32" else x.astype(np.float16).astype(np.float32)
            rows.append({"model": model, "dtype": dtype, "bytes": int(x.shape[1] * width),
                         "teacher_recall": neighbour_recall(teacher, stored, k)})
    return rows
