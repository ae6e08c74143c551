"""Binary LSH codes: random hyperplanes on centred vectors, packed 8 bits a byte, Hamming search.

A :class:`Hasher` is fully described by its seed, width, bit count and centre (the mean of the
vectors it was fitted on), so it travels in a codes file's metadata and needs no pickle. Signs of
``(x - centre) @ planes`` with Gaussian planes approximate angles (SimHash, Charikar 2002); the
centring matters because embeddings share a large common direction that would otherwise make most
bits constant. :func:`lsh_search` takes ``candidate_factor * k`` Hamming neighbours and, given the
float vectors, re-ranks them by exact cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protkit.neighbours import rerank

BIT_CHOICES = (64, 128, 256, 512, 1024)
CANDIDATE_FACTOR = 10


@dataclass(frozen=True)
class Hasher:
    """Random-hyperplane hash of ``dim``-wide vectors to ``bits`` bits."""

    dim: int
    bits: int
    seed: int
    centre: np.ndarray  # (D,) float32

    @property
    def planes(self) -> np.ndarray:
        """(D, bits) float32 Gaussian hyperplane normals, regenerated from the seed."""
        return np.random.default_rng(self.seed).standard_normal((self.dim, self.bits), dtype=np.float32)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """(N, bits // 8) uint8 packed codes of (N, D) vectors."""
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors are {vectors.shape[1]}-d, the hasher {self.dim}-d")
        planes = self.planes
        codes = np.empty((len(vectors), self.bits // 8), np.uint8)
        for start in range(0, len(vectors), 65536):
            block = vectors[start:start + 65536].astype(np.float32) - self.centre  # (b, D)
            codes[start:start + len(block)] = np.packbits(block @ planes > 0, axis=1)
        return codes

    def to_meta(self) -> dict:
        return {"dim": self.dim, "bits": self.bits, "seed": self.seed, "method": "random_hyperplanes",
                "centre": [float(v) for v in self.centre]}

    @classmethod
    def from_meta(cls, meta: dict) -> Hasher:
        return cls(int(meta["dim"]), int(meta["bits"]), int(meta["seed"]), np.asarray(meta["centre"], np.float32))


def fit_hasher(vectors: np.ndarray, bits: int, seed: int = 0) -> Hasher:
    """A hasher centred on the mean of ``vectors`` (N, D); ``bits`` a positive multiple of 8."""
    if bits < 8 or bits % 8:
        raise ValueError(f"bits must be a positive multiple of 8, got {bits}")
    centre = vectors.mean(axis=0, dtype=np.float64).astype(np.float32) if len(vectors) else np.zeros(vectors.shape[1], np.float32)
    return Hasher(vectors.shape[1], bits, seed, centre)


def hamming_topk(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest packed codes per query: Hamming distances (Q, k) int32, indices (Q, k) int64 (-1: none)."""
    import faiss

    index = faiss.IndexBinaryFlat(database.shape[1] * 8)
    index.add(np.ascontiguousarray(database, dtype=np.uint8))
    distances, indices = index.search(np.ascontiguousarray(queries, dtype=np.uint8), k)
    return distances, indices.astype(np.int64)


def lsh_search(
    hasher: Hasher,
    database_codes: np.ndarray,
    queries: np.ndarray,
    k: int,
    database_vectors: np.ndarray | None = None,
    candidate_factor: int = CANDIDATE_FACTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` per query (Q, D): cosine scores and indices when ``database_vectors`` (N, D) are given
    (Hamming candidates re-ranked), else ``1 - 2 * hamming / bits`` (an angle estimate) and indices."""
    query_codes = hasher.encode(queries)
    if database_vectors is None:
        distances, indices = hamming_topk(database_codes, query_codes, k)
        scores = np.where(indices >= 0, 1.0 - 2.0 * distances / hasher.bits, -np.inf).astype(np.float32)
        return scores, indices
    _, candidates = hamming_topk(database_codes, query_codes, max(k, candidate_factor * k))
    return rerank(database_vectors, queries, candidates, k)
