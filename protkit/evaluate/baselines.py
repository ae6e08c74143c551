"""The baselines a student must beat: the untrained student (same settings and initial weights) and a
ridge regression from amino-acid composition to the teacher's vectors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.alphabet import AMBIGUOUS, STANDARD

COMPOSITION_ALPHABET = STANDARD + AMBIGUOUS
RIDGE_BLOCK_ROWS = 65536  # train sequences per block of the composition fit



def composition_features(sequences: Sequence[str]) -> np.ndarray:
    """Frequencies of the 20 standard amino acids and X B Z U O, plus log length.  # (N, 26)"""
    lut = np.full(256, len(COMPOSITION_ALPHABET), dtype=np.int64)  # other characters: not counted
    for i, aa in enumerate(COMPOSITION_ALPHABET):
        lut[ord(aa)] = i
    features = np.zeros((len(sequences), len(COMPOSITION_ALPHABET) + 1))
    for row, seq in enumerate(sequences):
        codes = lut[np.frombuffer(seq.upper().encode("ascii", "replace"), dtype=np.uint8)]
        counts = np.bincount(codes, minlength=len(COMPOSITION_ALPHABET) + 1)[: len(COMPOSITION_ALPHABET)]
        features[row, :-1] = counts / max(len(seq), 1)
        features[row, -1] = math.log(max(len(seq), 1))
    return features


@dataclass
class Ridge:
    """Standardized-feature ridge regression with an unpenalized intercept."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (F, D)
    intercept: np.ndarray  # (D,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept  # (N, D)


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float = 1.0) -> Ridge:
    """Closed form ``(XᵀX + αI)⁻¹ XᵀY`` on standardized, centred features and centred targets."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    x = (features - mean) / scale  # (M, F)
    y_mean = targets.mean(axis=0, dtype=np.float64)
    coef = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (targets - y_mean))  # (F, D)
    return Ridge(mean, scale, coef, y_mean)


def fit_composition(
    sequences: Sequence[str], targets: dict[str, np.ndarray], alpha: float = 1.0, block_rows: int = RIDGE_BLOCK_ROWS
) -> dict[str, Ridge]:
    """:func:`fit_ridge` of :func:`composition_features` to each pooling's ``targets`` (arrays or
    :class:`~protkit.teacher.read.CacheRows`). Up to ``block_rows`` sequences: exactly ``fit_ridge``; more:
    the same fit from float64 moments accumulated ``block_rows`` at a time (features: mean and
    variance merged per block; then ``XᵀX``, ``XᵀY``, ``ΣX``, ``ΣY``), so memory stays flat."""
    n = len(sequences)
    if n <= block_rows:
        features = composition_features(sequences)
        return {p: fit_ridge(features, np.asarray(t[0:n], dtype=np.float32), alpha) for p, t in targets.items()}
    blocks = [slice(a, min(a + block_rows, n)) for a in range(0, n, block_rows)]
    count, mean, m2 = 0, 0.0, 0.0
    for block in blocks:  # Chan et al.'s merge of per-block means and squared deviations
        f = composition_features(sequences[block])
        b_mean, b_m2 = f.mean(axis=0), ((f - f.mean(axis=0)) ** 2).sum(axis=0)
        delta, total = b_mean - mean, count + len(f)
        mean, m2, count = mean + delta * len(f) / total, m2 + b_m2 + delta**2 * count * len(f) / total, total
    scale = np.sqrt(m2 / count)
    scale[scale == 0] = 1.0
    gram, x_sum = 0.0, 0.0
    cross = dict.fromkeys(targets, 0.0)
    y_sum = dict.fromkeys(targets, 0.0)
    for block in blocks:
        x = (composition_features(sequences[block]) - mean) / scale  # (b, F)
        gram, x_sum = gram + x.T @ x, x_sum + x.sum(axis=0)
        for p, t in targets.items():
            y = np.asarray(t[block], dtype=np.float64)  # (b, D)
            cross[p], y_sum[p] = cross[p] + x.T @ y, y_sum[p] + y.sum(axis=0)
    fits = {}
    for p in targets:
        y_mean = y_sum[p] / n
        coef = np.linalg.solve(gram + alpha * np.eye(len(mean)), cross[p] - np.outer(x_sum, y_mean))  # (F, D)
        fits[p] = Ridge(mean, scale, coef, y_mean)
    return fits


def untrained_student(config: ProtHashConfig, seed: int) -> ProtHash:
    """The distillation's initial model: ``torch.manual_seed(seed)`` then ``ProtHash(config)``
    (the global RNG state is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProtHash(config).eval()
