"""Scores of predictions against targets, per task: MCC, macro F1 and accuracy (classification);
macro F1 and per-label F1/accuracy (multilabel, threshold 0.5 on the probability); Spearman and
R2 (regression); MCC, macro F1 and accuracy over the labelled residues (tokens)."""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from protkit.finetune.tasks import Example, LabelSpace
from protkit.hf.heads import IGNORE

THRESHOLD = 0.0  # a multi-label logit above this is a predicted 1 (probability 0.5)


def classes_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MCC, macro F1 and accuracy of class ids ``(N,)``."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(truth, predicted))}


def multilabel_scores(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
    """Macro F1 over the labels and F1/accuracy per label of 0/1 ``(N, K)`` arrays."""
    from sklearn.metrics import accuracy_score, f1_score

    per_label = {name: {"f1": float(f1_score(truth[:, k], predicted[:, k], zero_division=0)),
                        "accuracy": float(accuracy_score(truth[:, k], predicted[:, k]))}
                 for k, name in enumerate(names)}
    return {"macro_f1": float(np.mean([s["f1"] for s in per_label.values()])),
            "accuracy": float(np.mean([s["accuracy"] for s in per_label.values()])), "labels": per_label}


def regression_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Spearman's rank correlation and R2 (None when undefined: constant values)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import r2_score

    with warnings.catch_warnings():  # constant values: undefined, reported as None
        warnings.simplefilter("ignore")
        rho = float(spearmanr(truth, predicted).statistic) if len(truth) > 1 else math.nan
    r2 = float(r2_score(truth, predicted)) if len(truth) > 1 else math.nan
    return {"spearman": None if math.isnan(rho) else rho, "r2": None if math.isnan(r2) else r2}


def score(space: LabelSpace, examples: Sequence[Example], outputs: Sequence[np.ndarray]) -> dict:
    """The scores of the model ``outputs`` (one array per example: logits ``(C,)``, a value ``(1,)``,
    or per-residue logits ``(L_i, C)``) against the examples' targets; ``n``: examples scored."""
    if space.task == "classification":
        result = classes_scores(np.array([e.target for e in examples]), np.array([o.argmax() for o in outputs]))
    elif space.task == "multilabel":
        truth = np.array([e.target for e in examples]).astype(int)  # (N, K)
        result = multilabel_scores(truth, (np.stack(outputs) > THRESHOLD).astype(int), space.names)
    elif space.task == "regression":
        result = regression_scores(np.array([e.target for e in examples]), np.array([o[0] for o in outputs]))
    else:
        truth, predicted = residue_pairs(examples, outputs)
        result = {**classes_scores(truth, predicted), "residues": int(len(truth))}
    return {**result, "n": len(examples)}


def residue_pairs(examples: Sequence[Example], outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Labelled residues' true and predicted classes, over the residues the model saw (truncation)."""
    truth, predicted = [], []
    for example, logits in zip(examples, outputs):  # logits (L_i, C)
        target = np.asarray(example.target[: len(logits)])
        keep = target != IGNORE
        truth.append(target[keep])
        predicted.append(logits.argmax(axis=1)[keep])
    return np.concatenate(truth), np.concatenate(predicted)


def comparable(value: float | None) -> float:
    """A metric for comparisons: an undefined one (None) ranks below every number."""
    return -math.inf if value is None else value
