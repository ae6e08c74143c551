"""Near-duplicate groups and clusters of embedded proteins (``protkit dedup``, ``protkit cluster``).

- :func:`dedup`: CD-HIT's greedy rule on cosine: proteins taken longest first; each joins the most
  similar representative at or above the threshold, or becomes a representative. So every member
  is within the threshold of its representative (no chaining).
- :func:`threshold_clusters`: connected components of the graph of pairs at or above the threshold
  (single linkage: members may be further apart than the threshold through chains).
- :func:`kmeans_clusters`: spherical k-means (FAISS), each cluster represented by its member
  nearest to the centroid.

Outputs are tables in input order; ``score`` is the cosine to the representative; ``description``
(last) is each protein's header text after the id, when the embeddings file has them. The pairs above
the threshold come from an exact FAISS range search, so the cost grows with N squared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from protkit.io.progress import progress_bar
from protkit.search.vectors import DESCRIPTION, Embeddings, SearchError

log = logging.getLogger(__name__)
BLOCK = 4096  # query rows per range search


@dataclass
class Pairs:
    """Pairs (i, j), i != j, with cosine at or above a threshold, grouped by i (CSR)."""

    starts: np.ndarray  # (N + 1,) int64
    neighbours: np.ndarray  # (E,) int64
    scores: np.ndarray  # (E,) float32

    def of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.starts[i], self.starts[i + 1]
        return self.neighbours[lo:hi], self.scores[lo:hi]


def check_threshold(threshold: float) -> None:
    if not -1.0 <= threshold <= 1.0:
        raise SearchError(f"--threshold is a cosine in [-1, 1], got {threshold}")


def similar_pairs(vectors: np.ndarray, threshold: float) -> Pairs:
    """Every pair of rows of ``vectors`` (N, D; unit rows) with cosine >= ``threshold``."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    radius = np.nextafter(np.float32(threshold), np.float32(-np.inf))  # FAISS keeps scores > radius
    counts, neighbours, scores = [], [], []
    blocks = range(0, len(vectors), BLOCK)
    for start in progress_bar(blocks, total=len(blocks), desc="pairs", unit="block", disable=len(vectors) <= 4 * BLOCK):
        limits, found_scores, found = index.range_search(vectors[start:start + BLOCK], float(radius))
        limits = limits.astype(np.int64)
        rows = np.repeat(np.arange(start, start + len(limits) - 1), np.diff(limits))
        other = found != rows
        counts.append(np.bincount(rows[other] - start, minlength=len(limits) - 1))
        neighbours.append(found[other].astype(np.int64))
        scores.append(found_scores[other].astype(np.float32))
    starts = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return Pairs(starts, np.concatenate(neighbours), np.concatenate(scores))


def longest_first(embeddings: Embeddings) -> np.ndarray:
    """Row order: longest protein first, ties in input order (all input order without lengths)."""
    n = len(embeddings.ids)
    if embeddings.lengths is None:
        return np.arange(n)
    return np.lexsort((np.arange(n), -np.asarray(embeddings.lengths, np.int64)))


def dedup(embeddings: Embeddings, threshold: float) -> pd.DataFrame:
    """Near-duplicate groups: ``id``, ``representative``, ``score`` (cosine to it; 1 for itself)."""
    check_threshold(threshold)
    pairs = similar_pairs(embeddings.vectors, threshold)
    representative = np.full(len(embeddings.ids), -1, np.int64)
    score = np.ones(len(embeddings.ids), np.float32)
    for i in longest_first(embeddings):
        neighbours, scores = pairs.of(i)
        is_rep = representative[neighbours] == neighbours
        if is_rep.any():
            best = int(np.argmax(np.where(is_rep, scores, -np.inf)))
            representative[i], score[i] = neighbours[best], scores[best]
        else:
            representative[i] = i
    return _table(embeddings, representative, score)


def threshold_clusters(embeddings: Embeddings, threshold: float) -> pd.DataFrame:
    """Connected components of pairs >= ``threshold``: ``id``, ``cluster``, ``representative``
    (the longest member), ``score``."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    check_threshold(threshold)
    n = len(embeddings.ids)
    pairs = similar_pairs(embeddings.vectors, threshold)
    graph = csr_matrix((np.ones(len(pairs.neighbours), np.int8), pairs.neighbours, pairs.starts), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order = longest_first(embeddings)
    first_seen = {}
    for i in order:  # the longest member of each component comes first
        first_seen.setdefault(int(labels[i]), int(i))
    representative = np.array([first_seen[int(c)] for c in labels], np.int64)
    return _with_clusters(embeddings, representative)


def kmeans_clusters(embeddings: Embeddings, k: int, seed: int = 0, iterations: int = 25) -> pd.DataFrame:
    """Spherical k-means: ``id``, ``cluster``, ``representative`` (member nearest the centroid), ``score``."""
    import faiss

    n = len(embeddings.ids)
    if k < 1 or n == 0:
        raise SearchError(f"{embeddings.path}: k-means needs k >= 1 and proteins (k {k}, {n} proteins)")
    if k > n:
        log.warning("%s: %d proteins, fewer than k = %d; each protein is its own cluster", embeddings.path, n, k)
        k = n
    # min_points_per_centroid only gates FAISS's stderr line "WARNING clustering N points to k centroids:
    # please provide at least 39 k training points", advice for training a quantizer; here k is the
    # number of clusters asked for, every protein is assigned, and the centroids are the same without it.
    kmeans = faiss.Kmeans(embeddings.vectors.shape[1], k, niter=iterations, seed=seed, spherical=True,
                          verbose=False, max_points_per_centroid=max(256, n // k + 1), min_points_per_centroid=1)
    kmeans.train(embeddings.vectors)
    _, assignment = kmeans.index.search(embeddings.vectors, 1)  # (N, 1)
    assignment = assignment[:, 0]
    to_centroid = np.einsum("nd,nd->n", embeddings.vectors, kmeans.centroids[assignment])
    representative = np.empty(n, np.int64)
    for c in np.unique(assignment):
        members = np.flatnonzero(assignment == c)
        representative[members] = members[np.argmax(to_centroid[members])]
    return _with_clusters(embeddings, representative)


def _scores_to(embeddings: Embeddings, representative: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", embeddings.vectors, embeddings.vectors[representative]).astype(np.float32)


def _with_clusters(embeddings: Embeddings, representative: np.ndarray) -> pd.DataFrame:
    """Clusters numbered 0.. by size (largest first), ties by their first member."""
    reps, first, sizes = np.unique(representative, return_index=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    number = np.empty(len(reps), np.int64)
    number[order] = np.arange(len(reps))
    cluster = number[np.searchsorted(reps, representative)]
    table = _table(embeddings, representative, _scores_to(embeddings, representative))
    table.insert(1, "cluster", cluster)
    return table


def _table(embeddings: Embeddings, representative: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """``id``, ``representative``, ``score`` and, when the embeddings have them, ``description``."""
    ids = np.asarray(embeddings.ids, dtype=object)
    table = pd.DataFrame({"id": ids, "representative": ids[representative], "score": np.minimum(score, 1.0)})
    if embeddings.descriptions is not None:
        table[DESCRIPTION] = embeddings.descriptions
    return table
