"""ProtHash 1.0's objective: four stages and the MLM logits matched to the teacher residue by residue.

Mirrors ``DecomposedTokenRepresentationLoss`` and ``WeightedCombinedLoss`` of ProtHash's training
(andrewdalpino/ESMC-ProtHash, ``loss.py`` and ``distill.py``). For each pair of ``(B, L, W)`` tensors,
over the real positions of ``mask`` only (``s``: student through its adapter, ``t``: teacher):

- direction: MSE between the unit vectors ``s / |s|`` and ``t / |t|`` (a mean over positions and the
  ``W`` numbers, so ``(2 - 2 cos) / W`` per position);
- magnitude: mean over positions of ``((|s| - |t|) / |t|) ** 2``;

both norms clamped below at ``eps``. Stage ``s`` adds ``w_s * direction_s + m_s * magnitude_s`` with
``w = (0.25, 0.5, 0.75, 1.0)`` and ``m_s = w_s / 100``; the logits (the student's sequence head against
the teacher's logits cut to the 33 tokens) are a fifth pair with the same decomposed loss, weights
0.1 and 0.001 (ProtHash's ``stage5``: no KL divergence, no temperature). Positions are pooled over
the whole batch (a long sequence weighs more than a short one), as ProtHash does. Computed in
float32 whatever the autocast; padded positions (even NaN or inf) change neither the loss nor the
gradients. ProtHash's mask is ``input_ids != PAD`` (CLS and EOS included): ``TokenBatch.attention_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

STAGE_WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # ProtHash 1.0's stage 1 .. 4 direction weights
MAGNITUDE_FRACTION = 0.01  # default magnitude weight: this fraction of the direction weight
LOGITS_WEIGHT = 0.1  # direction weight of the logits (magnitude: LOGITS_WEIGHT * MAGNITUDE_FRACTION)
NORM_EPSILON = 1e-8  # norms are clamped below at this


@dataclass(frozen=True)
class StageLossWeights:
    """Weights of :func:`stage_loss`; ``None`` magnitude weights are the direction weights / 100."""

    stages: tuple[float, ...] = STAGE_WEIGHTS
    magnitudes: tuple[float, ...] | None = None
    logits: float = LOGITS_WEIGHT
    logits_magnitude: float | None = None
    eps: float = NORM_EPSILON

    def __post_init__(self) -> None:
        if self.magnitudes is not None and len(self.magnitudes) != len(self.stages):
            raise ValueError(f"{len(self.stages)} stage weights but {len(self.magnitudes)} magnitude weights")
        weights = [*self.stages, *self.magnitude_weights, self.logits, self.logits_magnitude_weight]
        if not self.stages or any(w < 0 for w in weights) or self.eps <= 0:
            raise ValueError(f"stage loss weights must be non-negative (and at least one stage) and eps positive, "
                             f"got {self}")

    @property
    def magnitude_weights(self) -> tuple[float, ...]:
        if self.magnitudes is not None:
            return tuple(self.magnitudes)
        return tuple(w * MAGNITUDE_FRACTION for w in self.stages)

    @property
    def logits_magnitude_weight(self) -> float:
        return self.logits * MAGNITUDE_FRACTION if self.logits_magnitude is None else self.logits_magnitude


@dataclass
class StageLoss:
    """The differentiable total and each term as floats (for logging)."""

    loss: torch.Tensor  # () float32, differentiable
    total: float
    direction: list[float]  # per stage
    magnitude: list[float]  # per stage
    logits_direction: float | None  # None without logits
    logits_magnitude: float | None

    def terms(self) -> dict[str, float]:
        """``{"loss": .., "stage1_direction": .., "stage1_magnitude": .., .., "logits_direction": ..}``."""
        out = {"loss": self.total}
        for s, (d, m) in enumerate(zip(self.direction, self.magnitude), start=1):
            out[f"stage{s}_direction"], out[f"stage{s}_magnitude"] = d, m
        if self.logits_direction is not None:
            out["logits_direction"], out["logits_magnitude"] = self.logits_direction, self.logits_magnitude
        return out


def decomposed_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, eps: float = NORM_EPSILON,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Direction and magnitude loss (each a float32 scalar) of ``student`` against ``teacher`` (both
    ``(B, L, W)``) over the positions where ``mask (B, L)`` is True."""
    if student.shape != teacher.shape or student.shape[:2] != mask.shape:
        raise ValueError(f"student {tuple(student.shape)}, teacher {tuple(teacher.shape)} and mask "
                         f"{tuple(mask.shape)} must agree: (B, L, W), (B, L, W), (B, L)")
    keep = mask.to(device=student.device, dtype=torch.bool)  # (B, L)
    if not bool(keep.any()):
        raise ValueError("the mask selects no position: nothing to learn from this batch")
    with torch.autocast(device_type=student.device.type, enabled=False):
        s = student[keep].float()  # (N, W): real positions only, so padding never enters
        t = teacher.to(student.device)[keep].float()  # (N, W)
        s_norm = s.norm(dim=-1, keepdim=True).clamp(min=eps)  # (N, 1)
        t_norm = t.norm(dim=-1, keepdim=True).clamp(min=eps)  # (N, 1)
        direction = (s / s_norm - t / t_norm).pow(2).mean()
        magnitude = ((s_norm - t_norm) / t_norm).pow(2).mean()
    return direction, magnitude


def stage_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    mask: torch.Tensor,
    student_logits: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
    weights: StageLossWeights = StageLossWeights(),
) -> StageLoss:
    """ProtHash 1.0's loss of the student's stages (through its adapters, ``S x (B, L, D)``) against the
    teacher's stage layers (``S x (B, L, D)``) and, when both are given, of the student's logits against
    the teacher's (``(B, L, 33)``), over the positions of ``mask (B, L)`` bool."""
    if not len(student) == len(teacher) == len(weights.stages):
        raise ValueError(f"{len(student)} student stages, {len(teacher)} teacher layers and "
                         f"{len(weights.stages)} stage weights: they must be as many")
    if (student_logits is None) != (teacher_logits is None):
        raise ValueError("pass both the student's and the teacher's logits, or neither")
    terms = [decomposed_loss(s, t, mask, weights.eps) for s, t in zip(student, teacher)]
    pairs = list(zip(weights.stages, weights.magnitude_weights))
    if student_logits is not None:
        terms.append(decomposed_loss(student_logits, teacher_logits, mask, weights.eps))
        pairs.append((weights.logits, weights.logits_magnitude_weight))
    loss = sum(w * d + m * g for (w, m), (d, g) in zip(pairs, terms))
    values = torch.stack([loss.detach(), *(x.detach() for pair in terms for x in pair)]).cpu().tolist()  # one sync
    total, flat = values[0], values[1:]
    stages = len(student)
    has_logits = student_logits is not None
    return StageLoss(
        loss=loss,
        total=total,
        direction=flat[0:2 * stages:2],
        magnitude=flat[1:2 * stages:2],
        logits_direction=flat[2 * stages] if has_logits else None,
        logits_magnitude=flat[2 * stages + 1] if has_logits else None,
    )
