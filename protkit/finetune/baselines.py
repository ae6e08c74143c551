"""What fine-tuning is compared with, fitted on the training examples and scored like it:

- ``frozen_probe``: the base model left as it is; its mean-pooled vectors (a student's
  ``embed_teacher``, the teacher's last hidden states; per residue for ``tokens``) into a logistic
  regression (standardised, balanced classes; one per label for multilabel) or a ridge regression;
- ``composition``: amino-acid composition and log length
  (:func:`protkit.evaluate.baselines.composition_features`) into the same regressor; per residue,
  the composition of the residues within :data:`RESIDUE_WINDOW` of it.

Per-residue baselines use a seeded sample of at most :data:`MAX_PROBE_RESIDUES` labelled residues per set.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from protkit.evaluate.baselines import composition_features, fit_ridge
from protkit.evaluate.probes import MAX_ITER
from protkit.finetune.inference import frozen_forward, run_batches
from protkit.finetune.metrics import classes_scores, multilabel_scores, regression_scores
from protkit.finetune.tasks import Example, LabelSpace
from protkit.hf.heads import IGNORE
from protkit.sequences.tokenize import max_residues

MAX_PROBE_RESIDUES = 50_000
RESIDUE_WINDOW = 7  # residues either side in a residue's composition
RIDGE_ALPHA = 1.0


def logistic_predictions(train_x: np.ndarray, train_y: np.ndarray, sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Predicted classes of ``sets`` by a logistic regression fitted on ``(train_x (N, F), train_y (N,))``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(train_y.tolist())) < 2:  # one class only (a label column without positives)
        return [np.full(len(x), train_y[0]) for x in sets]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER, class_weight="balanced"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-convergence: a baseline, not worth a warning per label
        classifier.fit(train_x, train_y)
    return [classifier.predict(x) for x in sets]


def fit_and_score(space: LabelSpace, train: tuple[np.ndarray, np.ndarray],
                  sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    """Fit the task's regressor on ``train`` (features, targets) and score it on each of ``sets``."""
    names, xs = list(sets), [sets[n][0] for n in sets]
    if space.task == "regression":
        ridge = fit_ridge(train[0], train[1].reshape(-1, 1), RIDGE_ALPHA)
        return {n: regression_scores(sets[n][1], ridge.predict(x)[:, 0]) | {"n": len(x)} for n, x in zip(names, xs)}
    if space.task == "multilabel":
        columns = [logistic_predictions(train[0], train[1][:, k], xs) for k in range(train[1].shape[1])]
        return {n: multilabel_scores(sets[n][1].astype(int), np.stack([c[i] for c in columns], axis=1).astype(int),
                                     space.names)
                | {"n": len(sets[n][1])} for i, n in enumerate(names)}
    predicted = logistic_predictions(train[0], train[1], xs)
    key = "residues" if space.task == "tokens" else "n"
    return {n: classes_scores(sets[n][1], p) | {key: len(p)} for n, p in zip(names, predicted)}


def residue_sample(examples: Sequence[Example], max_length: int, seed: int) -> list[np.ndarray]:
    """Positions (0-based residues) of each example's labelled residues in the sample."""
    positions = [np.flatnonzero(np.asarray(e.target[: max_residues(max_length)]) != IGNORE) for e in examples]
    fraction = min(1.0, MAX_PROBE_RESIDUES / max(1, sum(len(p) for p in positions)))
    rng = np.random.default_rng(seed)
    return [p[rng.random(len(p)) < fraction] if fraction < 1 else p for p in positions]


def frozen_features(base: nn.Module, examples: Sequence[Example], space: LabelSpace, max_length: int,
                    max_tokens: int, device: torch.device, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The frozen model's vectors and the targets: per protein, or per sampled residue."""
    sequences = [e.sequence for e in examples]
    if space.task != "tokens":
        vectors = run_batches(frozen_forward(base, False), sequences, max_length, max_tokens, device)
        return np.stack(vectors), np.array([e.target for e in examples])  # (N, D), (N,) or (N, K)
    keep = residue_sample(examples, max_length, seed)
    vectors = run_batches(frozen_forward(base, True), sequences, max_length, max_tokens, device,
                          select=lambda i, residues: residues[keep[i]])  # (k_i, D) each
    return np.concatenate(vectors), residue_targets(examples, keep)


def residue_targets(examples: Sequence[Example], keep: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(e.target)[k] for e, k in zip(examples, keep)]).astype(np.int64)


def composition(examples: Sequence[Example], space: LabelSpace, max_length: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Composition features and the targets: per protein, or per sampled residue (its window)."""
    if space.task != "tokens":
        return composition_features([e.sequence for e in examples]), np.array([e.target for e in examples])
    keep = residue_sample(examples, max_length, seed)
    windows = [e.sequence[max(0, p - RESIDUE_WINDOW): p + RESIDUE_WINDOW + 1]
               for e, k in zip(examples, keep) for p in k]
    return composition_features(windows), residue_targets(examples, keep)


def baseline_scores(base: nn.Module, space: LabelSpace, train: Sequence[Example], sets: dict[str, Sequence[Example]],
                    max_length: int, max_tokens: int, device: torch.device, seed: int) -> dict[str, dict]:
    """``{"frozen_probe": {set: scores}, "composition": {set: scores}}`` for the sets that hold examples."""
    sets = {name: examples for name, examples in sets.items() if examples}
    frozen = {name: frozen_features(base, ex, space, max_length, max_tokens, device, seed) for name, ex in sets.items()}
    frozen_train = frozen_features(base, train, space, max_length, max_tokens, device, seed)
    counts = {name: composition(ex, space, max_length, seed) for name, ex in sets.items()}
    return {"frozen_probe": fit_and_score(space, frozen_train, frozen),
            "composition": fit_and_score(space, composition(train, space, max_length, seed), counts)}
