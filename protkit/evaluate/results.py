"""What an evaluation produces and its report reads: the :class:`Evaluation` record and the
constants both sides share (models, baselines, length bins).

It sits apart so that :mod:`protkit.evaluate` (which computes) and :mod:`protkit.evaluate.report` (which
writes files) need not import each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LENGTH_BINS: tuple[tuple[int, float, str], ...] = (
    (0, 100, "<100"),
    (100, 300, "100-300"),
    (300, 600, "300-600"),
    (600, 1000, "600-1000"),
    (1000, math.inf, ">=1000"),
)
MODELS = ("fp32", "int8", "untrained", "composition")
BASELINES = ("untrained", "composition")
PRECISIONS = ("fp32", "int8")


@dataclass
class Evaluation:
    """One variant's metrics (JSON-ready) and the per-sequence values its plots need."""

    metrics: dict
    cosines: dict[str, dict[str, np.ndarray]]  # model -> pooling -> (N,) per held-out sequence
    lengths: np.ndarray  # (N,) residues
