"""Per-sequence metrics of an evaluation: cosine, summaries, length bins, paired differences."""

from __future__ import annotations

import numpy as np

from protkit.evaluate.results import LENGTH_BINS


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``a (N, D)`` and ``b (N, D)``.  # (N,)"""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def describe(values: np.ndarray) -> dict:
    """mean, median, p5, min and n of per-sequence values (None when empty)."""
    if len(values) == 0:
        return {"n": 0, "mean": None, "median": None, "p5": None, "min": None}
    return {
        "n": int(len(values)),
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "p5": float(np.percentile(values, 5)),
        "min": float(np.min(values)),
    }


def by_length(values: np.ndarray, lengths: np.ndarray) -> dict[str, dict]:
    """:func:`describe` per length bin (residues) of :data:`LENGTH_BINS`."""
    return {label: describe(values[(lengths >= lo) & (lengths < hi)]) for lo, hi, label in LENGTH_BINS}


def paired_difference(model: np.ndarray, baseline: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per-sequence ``model - baseline`` cosine differences: mean, 95% bootstrap interval of the
    mean (``n_boot`` resamples of the sequences), and the share of sequences where the model is ahead."""
    diff = np.asarray(model, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)  # (N,)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95": [float(low), float(high)], "win_fraction": float((diff > 0).mean())}
