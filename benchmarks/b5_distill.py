"""B5 distillation step: one optimizer step of the student from cached teacher targets against
the same step with the teacher (esmc_300m config, seeded random weights) run on the fly for the
same batch. Both use protkit.distill's loss (``distill_loss``: cosine + MSE on cls and mean
pooling) and optimizer (AdamW, decay groups); the student's weights and optimizer state are reset
before every step (untimed), so each timed step starts from the same state."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    Goal, Result, Table, device_name, interleaved, length_summary, rate, residues, sample_proteins, spread,
    student_model, tokenize,
)
from protkit.distill.config import TrainConfig
from protkit.distill.objectives import DistillData, distill_loss, encode_split
from protkit.distill.schedule import build_optimizer
from protkit.models.esmc.model import ESMC, ESMC_PRESETS, ESMCConfig
from protkit.models.esmc.weights import random_esmc
from protkit.models.prothash.model import ProtHash
from protkit.sequences.pooling import pool
from protkit.sequences.tokenize import pad_batch

KEY, TITLE = "B5", "distillation step: cached targets vs teacher on the fly"
GOAL = 10.0
SAME_LOSS = 1e-5  # relative difference tolerated between the two steps' losses


@dataclass(frozen=True)
class Settings:
    teacher: ESMCConfig
    batch_size: int
    max_residues: int  # only proteins up to this length are sampled (CPU budget for the teacher)
    rounds: int


FULL = Settings(ESMC_PRESETS["esmc_300m"], 8, 256, 3)
QUICK = Settings(ESMCConfig(d_model=64, n_heads=1, n_layers=2), 3, 64, 2)


def teacher_targets(teacher: ESMC, tokens: list[list[int]], poolings: tuple[str, ...], device: torch.device) -> dict[str, np.ndarray]:
    """The teacher's pooled vectors of one batch, as the cache stores them.  {pooling: (B, D)}"""
    batch = pad_batch(tokens).to(device)
    with torch.inference_mode():
        hidden = teacher(batch.input_ids, batch.attention_mask).last_hidden_state.float()  # (B, L, D)
        return {p: pool(hidden, batch.input_ids, batch.attention_mask, p).cpu().numpy() for p in poolings}


class Step:
    """One optimizer step of ``student`` on a batch, from a fixed starting state."""

    def __init__(self, student: ProtHash, cfg: TrainConfig, sequences: list[str], device: torch.device):
        self.student, self.cfg, self.sequences, self.device = student, cfg, sequences, device
        self.start = {k: v.detach().clone() for k, v in student.state_dict().items()}

    def __call__(self, targets: dict[str, np.ndarray]) -> tuple[float, dict[str, torch.Tensor]]:
        """Loss of the step and the weights after it."""
        cfg, model = self.cfg, self.student
        enc = encode_split(DistillData(self.sequences, targets), cfg.max_length, cfg, model.config.teacher_dim, "train", "bench")
        optimizer = build_optimizer(model, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss = distill_loss(model, enc, list(range(len(self.sequences))), cfg, self.device, autocast=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        optimizer.step()
        return loss.item(), {k: v.detach().clone() for k, v in model.state_dict().items()}

    def reset(self) -> None:
        self.student.load_state_dict(self.start)


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = QUICK if quick else FULL
    proteins = sample_proteins(s.batch_size, data_dir, max_residues=s.max_residues)
    sequences = [p.sequence for p in proteins]
    tokens = tokenize(proteins)
    teacher = random_esmc(s.teacher, seed=0).to(device)
    student = student_model(quick, device).train()
    cfg = TrainConfig(max_length=1024, batch_tokens=max(len(t) for t in tokens) * len(tokens))
    cached = teacher_targets(teacher, tokens, cfg.poolings, device)  # the cache, built beforehand
    step = Step(student, cfg, sequences, device)

    def from_cache(_items) -> tuple[float, dict]:
        step.reset()
        return step(cached)

    def on_the_fly(_items) -> tuple[float, dict]:
        step.reset()
        return step(teacher_targets(teacher, tokens, cfg.poolings, device))

    variants = {"from cached targets": from_cache, "teacher on the fly": on_the_fly}
    timings = interleaved(variants, [[0]] * s.rounds, [[0]], device, repeats={"from cached targets": 3})
    fast, slow = variants
    (loss_a, weights_a), (loss_b, weights_b) = timings.outputs[fast][0], timings.outputs[slow][0]
    loss_gap = abs(loss_a - loss_b) / abs(loss_b)
    weight_gap = max(float((weights_a[k] - weights_b[k]).abs().max()) for k in weights_a)

    n_res = residues(tokens) * s.rounds
    table = Table(
        f"B5 one optimizer step, batch of {length_summary(tokens)}, {s.rounds} interleaved rounds",
        ["step", "seconds per step", "residues/s", "speed-up vs on the fly (median [min-max])", "loss"],
    )
    for name in variants:
        loss = timings.outputs[name][0][0]
        table.rows.append([name, f"{timings.total(name) / s.rounds:.3f}", rate(n_res / timings.total(name)),
                           spread(timings.speedups(name, slow)), f"{loss:.6f}"])
    result = Result(KEY, TITLE, device_name(device), tables=[table])
    result.goals.append(Goal("cached targets vs teacher on the fly, per step", GOAL, timings.speedup(fast, slow)))
    result.require(loss_gap <= SAME_LOSS, f"the two steps' losses differ: {loss_a:.7f} vs {loss_b:.7f}")
    result.require(weight_gap <= 1e-5, f"the two steps leave different weights (max difference {weight_gap:.2e})")
    result.notes += [
        f"Teacher: {'tiny test config' if quick else 'esmc_300m config'}, seeded random weights, fp32, inference_mode; "
        f"student: {'tiny test config' if quick else 'ProtHash-V2-384-Tiny'}, training mode, fp32.",
        f"Batch: {s.batch_size} DeepLoc proteins of at most {s.max_residues} residues (a CPU budget for the teacher), "
        "one padded batch; objective pooled (cls + mean), AdamW, gradient clipping, as protkit.distill trains.",
        "Cached targets are in memory here; protkit.distill reads a batch's rows from its on-disk target store "
        "(protkit.distill.store, one pread per batch, not timed). The step from cache is timed 3 times per round (median).",
        f"Correctness: both steps give the same loss (relative difference {loss_gap:.1e}) and the same weights "
        f"(max difference {weight_gap:.1e}).",
    ]
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
