"""protkit.distill.stage_loss: ProtHash 1.0's decomposed direction/magnitude loss over four stages and logits."""

from __future__ import annotations

import math

import pytest
import torch

from protkit.distill.stage_loss import STAGE_WEIGHTS, StageLossWeights, decomposed_loss, stage_loss
from protkit.models.esmc.model import ESMCConfig
from protkit.models.esmc.weights import random_esmc
from protkit.sequences.tokenize import encode_batch
from protkit.teacher.stage_targets import stage_targets

B, L, D, V = 3, 7, 16, 33
LENGTHS = (7, 4, 2)  # real positions per row; the rest is padding


@pytest.fixture
def mask() -> torch.Tensor:
    return torch.arange(L)[None, :] < torch.tensor(LENGTHS)[:, None]  # (B, L)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def stages(seed: int, width: int = D) -> list[torch.Tensor]:
    return [randn(B, L, width, seed=seed + s) for s in range(4)]


def test_zero_when_student_equals_teacher(mask):
    teacher, logits = stages(0), randn(B, L, V, seed=9)
    result = stage_loss([t.clone().requires_grad_() for t in teacher], teacher, mask, logits.clone(), logits)
    assert result.total == 0.0 and result.loss.item() == 0.0
    assert result.direction == [0.0] * 4 and result.magnitude == [0.0] * 4
    assert (result.logits_direction, result.logits_magnitude) == (0.0, 0.0)


def test_direction_ignores_the_students_scale_and_magnitude_ignores_its_direction(mask):
    student, teacher = randn(B, L, D, seed=1), randn(B, L, D, seed=2)
    direction, magnitude = decomposed_loss(student, teacher, mask)
    scaled_direction, scaled_magnitude = decomposed_loss(3.7 * student, teacher, mask)
    torch.testing.assert_close(scaled_direction, direction)
    assert scaled_magnitude > magnitude + 1  # the norms now differ a lot
    rotated = teacher.flip(-1).roll(1, dims=-1)  # same norms, other directions
    turned_direction, turned_magnitude = decomposed_loss(rotated, teacher, mask)
    assert turned_magnitude.item() < 1e-12 and turned_direction.item() > 0.05


def test_matches_a_hand_computation():
    student = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [9.0, 9.0]]])  # (1, 3, 2); the last position is padding
    teacher = torch.tensor([[[0.0, 5.0], [2.0, 0.0], [1.0, -1.0]]])
    mask = torch.tensor([[True, True, False]])
    direction, magnitude = decomposed_loss(student, teacher, mask)
    # units (0.6, 0.8) vs (0, 1): squared differences 0.36 and 0.04; (1, 0) vs (1, 0): 0 -> mean over 4 numbers
    assert direction.item() == pytest.approx((0.36 + 0.04) / 4)
    # norms 5 vs 5: 0; 1 vs 2: ((1 - 2) / 2)^2 = 0.25 -> mean over 2 positions
    assert magnitude.item() == pytest.approx(0.25 / 2)
    weights = StageLossWeights(stages=(2.0,), logits=0.5)
    result = stage_loss([student], [teacher], mask, student, teacher, weights)
    expected = 2.0 * 0.1 + 0.02 * 0.125 + 0.5 * 0.1 + 0.005 * 0.125
    assert result.total == pytest.approx(expected) and result.loss.item() == pytest.approx(expected)
    assert result.terms() == pytest.approx({"loss": expected, "stage1_direction": 0.1, "stage1_magnitude": 0.125,
                                            "logits_direction": 0.1, "logits_magnitude": 0.125})


def test_weighted_total_with_the_default_weights(mask):
    student, teacher = stages(10), stages(20)
    s_logits, t_logits = randn(B, L, V, seed=30), randn(B, L, V, seed=31)
    result = stage_loss(student, teacher, mask, s_logits, t_logits)
    expected = 0.0
    for w, s, t in zip(STAGE_WEIGHTS, student, teacher):
        d, m = decomposed_loss(s, t, mask)
        expected += w * d.item() + w / 100 * m.item()
    d, m = decomposed_loss(s_logits, t_logits, mask)
    expected += 0.1 * d.item() + 0.001 * m.item()
    assert result.total == pytest.approx(expected, rel=1e-6)
    unit = [torch.nn.functional.normalize(x, dim=-1) for x in (student[0], teacher[0])]
    reference = (unit[0] - unit[1])[mask].pow(2).mean()  # ProtHash: an MSE over the masked rows' numbers
    assert result.direction[0] == pytest.approx(reference.item(), rel=1e-6)
    custom = stage_loss(student, teacher, mask, weights=StageLossWeights(stages=(0, 0, 0, 1), magnitudes=(0, 0, 0, 0)))
    assert custom.total == pytest.approx(result.direction[3], rel=1e-6) and custom.logits_direction is None
    assert set(custom.terms()) == {"loss", *(f"stage{s}_{k}" for s in range(1, 5) for k in ("direction", "magnitude"))}


def test_padding_changes_neither_loss_nor_gradients(mask):
    teacher, t_logits = stages(40), randn(B, L, V, seed=44)
    clean = [x.requires_grad_() for x in stages(50)]
    s_logits = randn(B, L, V, seed=54).requires_grad_()
    first = stage_loss(clean, teacher, mask, s_logits, t_logits)
    first.loss.backward()

    def poisoned(x: torch.Tensor, value: float) -> torch.Tensor:
        return x.detach().masked_fill(~mask[..., None], value)

    dirty = [poisoned(x, math.nan).requires_grad_() for x in clean]
    dirty_logits = poisoned(s_logits, math.inf).requires_grad_()
    second = stage_loss(dirty, [poisoned(t, -math.inf) for t in teacher], mask, dirty_logits,
                        poisoned(t_logits, math.nan))
    second.loss.backward()
    assert second.total == first.total and math.isfinite(second.total)
    for a, b in zip([*clean, s_logits], [*dirty, dirty_logits]):
        assert torch.isfinite(b.grad).all()
        assert torch.equal(a.grad, b.grad)
        assert not b.grad[~mask].any() and b.grad[mask].abs().sum() > 0  # padding gets no gradient


def test_zero_teacher_vector_and_bf16_autocast(mask):
    teacher = stages(60)
    teacher[0][0, 0] = 0.0  # |t| = 0 at a real position: guarded by eps
    student = [x.requires_grad_() for x in stages(70)]
    result = stage_loss(student, teacher, mask)
    result.loss.backward()
    assert math.isfinite(result.total) and all(torch.isfinite(x.grad).all() for x in student)

    half = [x.detach().to(torch.bfloat16).requires_grad_() for x in stages(80)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = stage_loss([x * 1 for x in half], [t.to(torch.bfloat16) for t in stages(90)], mask)
    reference = stage_loss([x.float() for x in half], [t.to(torch.bfloat16).float() for t in stages(90)], mask)
    assert mixed.loss.dtype == torch.float32
    assert mixed.total == pytest.approx(reference.total, rel=1e-5)
    mixed.loss.backward()
    assert all(torch.isfinite(x.grad).all() and x.grad.dtype == torch.bfloat16 for x in half)


def test_with_a_teacher_on_the_fly():
    teacher = random_esmc(ESMCConfig(d_model=32, n_heads=1, n_layers=4), seed=0)
    batch = encode_batch(["MKVLAAGIVG", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MW"], 32)
    targets = stage_targets(teacher, batch, (0, 1, 2, 3))
    adapters = torch.nn.ModuleList([torch.nn.Linear(32, 32) for _ in range(4)])
    head = torch.nn.Linear(32, V)
    student = [a(torch.randn(*batch.input_ids.shape, 32)) for a in adapters]
    result = stage_loss(student, targets.hidden, batch.attention_mask, head(student[-1]), targets.logits)
    result.loss.backward()
    grads = [p.grad for p in [*adapters.parameters(), *head.parameters()]]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and result.total > 0


def test_invalid_arguments(mask):
    s, t = stages(0), stages(4)
    with pytest.raises(ValueError, match="4 student stages, 3 teacher layers and 4 stage weights"):
        stage_loss(s, t[:3], mask)
    with pytest.raises(ValueError, match="both the student's and the teacher's logits"):
        stage_loss(s, t, mask, student_logits=randn(B, L, V, seed=1))
    with pytest.raises(ValueError, match="must agree"):
        decomposed_loss(s[0], t[0][..., :5], mask)
    with pytest.raises(ValueError, match="selects no position"):
        decomposed_loss(s[0], t[0], torch.zeros(B, L, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 stage weights but 2 magnitude weights"):
        StageLossWeights(stages=(1, 1, 1), magnitudes=(1, 1))
    with pytest.raises(ValueError, match="non-negative"):
        StageLossWeights(logits=-1)
