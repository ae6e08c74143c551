"""B11 precision: fp16 and bf16 against fp32, for the esmc_300m teacher and ProtHash-V2-384-Tiny.

Each model (seeded random weights, as B1 and B2 use) is cast whole (``model.to(dtype)``; token ids
stay int64) and runs the same padded, length-sorted token-budget batches of real DeepLoc proteins
as in fp32. Against the fp32 outputs, over residue positions only (no CLS, EOS or padding):
the MSE and the relative L2 error (``||x - y|| / ||y||``) of the last hidden state, the 1st
percentile of the per-residue cosines, and the smallest cosine of the mean-pooled vectors (pooled
in fp32, as protkit embed pools; the student's in the teacher's width, through its adapter).
No speed is compared: this benchmark measures error (the notes give one pass's wall time, for scale).
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    Goal, Result, Table, cosines, device_name, length_summary, sample_note, sample_proteins, student_model, tokenize,
)
from protkit.models.cpu import this_cpu
from protkit.models.esmc import ESMC_PRESETS, ESMCConfig, random_esmc
from protkit.models.prothash import ProtHash
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.pooling import pool
from protkit.sequences.tokenize import TokenBatch, pad_batch, residue_mask

KEY, TITLE = "B11", "precision: fp16 and bf16 vs fp32, teacher and student"
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
ESMPP_MSE = {"fp16": 3e-8, "bf16": 1.4e-6}  # ESM++'s published MSE of the last hidden state vs fp32
REL_L2_LIMIT = 3e-2  # FastPLMs' bf16 parity limits
RESIDUE_COSINE_P1 = 0.995
POOLED_COSINE = 0.995
FP32_POOLING_COSINE = 0.99999  # fp32 pooling here vs ProtHash.embed_teacher(..., "mean") in fp32
ISA_FLAGS = ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "avx512f", "f16c")  # in /proc/cpuinfo


@dataclass(frozen=True)
class Settings:
    teacher: ESMCConfig
    n_sequences: int
    max_residues: int | None
    max_tokens: int  # padded tokens per batch, as B1


# CPU: without native fp16 matmul units (AVX512-FP16, AMX-FP16) fp16 runs ~5x slower than fp32
# (bf16 units are commoner), so the sample is kept to ~1,800 residues (B1's 200-residue cap):
# ~2 minutes on 2 cores, most of it the fp16 teacher, and still ~18 residues below p1.
FULL_CPU = Settings(ESMC_PRESETS["esmc_300m"], 16, 200, 1024)
FULL_CUDA = Settings(ESMC_PRESETS["esmc_300m"], 64, None, 16384)
QUICK = Settings(ESMCConfig(d_model=64, n_heads=1, n_layers=2), 6, 64, 256)

Forward = Callable[[torch.nn.Module, TokenBatch], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Outputs:
    """A model's outputs at one precision, in fp32 on the CPU."""

    residues: torch.Tensor  # (N_residues, D) last hidden state at residue positions
    pooled: torch.Tensor  # (N_sequences, D_pooled) mean over residues
    seconds: float


@dataclass(frozen=True)
class Errors:
    """One precision's error against fp32."""

    mse: float
    relative_l2: float
    residue_cosine_p1: float
    pooled_cosine_min: float

    def within_limits(self) -> bool:
        """FastPLMs' parity limits (NaN fails every one)."""
        return (self.relative_l2 <= REL_L2_LIMIT and self.residue_cosine_p1 >= RESIDUE_COSINE_P1
                and self.pooled_cosine_min >= POOLED_COSINE)


class CeilingGoal(Goal):
    """A goal on an error ceiling: ``measured <= target``, shown in scientific notation."""

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured <= self.target and self.condition_met

    def row(self) -> list[str]:
        row = super().row()
        row[1] = f"<= {self.target:.0e}"
        row[2] = "n/a" if self.measured is None else f"{self.measured:.1e}"
        return row


# --- metrics -------------------------------------------------------------------------------------
def mse(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Mean squared difference over every element.  got, expected: (N, D)"""
    return float(((got.double() - expected.double()) ** 2).mean())


def relative_l2(got: torch.Tensor, expected: torch.Tensor) -> float:
    """``||got - expected|| / ||expected||`` over all elements (Frobenius norms).  got, expected: (N, D)"""
    got, expected = got.double(), expected.double()
    return float((got - expected).norm() / expected.norm().clamp_min(1e-300))


def cosine_percentile(got: torch.Tensor, expected: torch.Tensor, q: float = 1.0) -> float:
    """The ``q``-th percentile of the row-wise cosines (NaN if any row is not finite).  got, expected: (N, D)"""
    values = cosines(got, expected)  # (N,)
    return float(np.percentile(values, q)) if np.isfinite(values).all() else float("nan")


def errors(got: Outputs, expected: Outputs) -> Errors:
    return Errors(
        mse(got.residues, expected.residues), relative_l2(got.residues, expected.residues),
        cosine_percentile(got.residues, expected.residues, 1.0), cosine_percentile(got.pooled, expected.pooled, 0.0),
    )


# --- models and forwards -------------------------------------------------------------------------
def teacher_hidden(model: torch.nn.Module, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """ESMC's last hidden state, twice: per residue and to pool.  # (B, L, D), (B, L, D)"""
    hidden = model(batch.input_ids, batch.attention_mask).last_hidden_state  # (B, L, D)
    return hidden, hidden


def student_hidden(model: torch.nn.Module, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """ProtHash's last hidden state and, to pool, its adapter's output in the teacher's width.
    # (B, L, d_model), (B, L, teacher_dim)"""
    hidden = model(batch.input_ids, batch.attention_mask)  # (B, L, d_model)
    return hidden, model.adapter(hidden)


def run_model(model: torch.nn.Module, forward: Forward, batches: Sequence[TokenBatch], device: torch.device) -> Outputs:
    """Residue rows and fp32 mean-pooled vectors of every batch, in batch order."""
    residues, pooled = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            batch = batch.to(device)
            hidden, to_pool = forward(model, batch)
            mask = residue_mask(batch.input_ids, batch.attention_mask)  # (B, L)
            residues.append(hidden.float()[mask].cpu())  # (n, D)
            pooled.append(pool(to_pool.float(), batch.input_ids, batch.attention_mask, "mean").cpu())  # (B, D)
    return Outputs(torch.cat(residues), torch.cat(pooled), time.perf_counter() - start)


def by_precision(model: torch.nn.Module, forward: Forward, batches: Sequence[TokenBatch],
                 device: torch.device) -> dict[str, Outputs]:
    """fp32 outputs, then those of a copy of ``model`` cast to each of ``PRECISIONS``."""
    out = {"fp32": run_model(model, forward, batches, device)}
    for name, dtype in PRECISIONS.items():
        cast = copy.deepcopy(model).to(dtype)
        out[name] = run_model(cast, forward, batches, device)
        del cast
    return out


def embed_teacher_cosines(student: ProtHash, batches: Sequence[TokenBatch], outputs: dict[str, Outputs],
                          device: torch.device) -> dict[str, float]:
    """Min cosine of ``student.embed_teacher(..., "mean")`` run whole at each precision (pooling in
    that precision too) against this benchmark's fp32 vectors: fp32 checks the pooling here, bf16
    and fp16 show what pooling in the low precision costs."""
    out = {}
    for name, dtype in {"fp32": torch.float32, **PRECISIONS}.items():
        model = copy.deepcopy(student).to(dtype)
        with torch.inference_mode():
            vectors = [model.embed_teacher(b.input_ids.to(device), b.attention_mask.to(device), pooling="mean")
                       for b in batches]  # (B, teacher_dim) each
        out[name] = float(cosines(torch.cat([v.float().cpu() for v in vectors]), outputs["fp32"].pooled).min())
    return out


# --- report --------------------------------------------------------------------------------------
def settings(device: torch.device, quick: bool) -> Settings:
    if quick:
        return QUICK
    return FULL_CUDA if device.type == "cuda" else FULL_CPU


def length_sorted_batches(tokens: list[list[int]], max_tokens: int) -> list[TokenBatch]:
    """Right-padded batches of at most ``max_tokens`` padded tokens (length-sorted, as protkit embeds)."""
    return [pad_batch([tokens[i] for i in rows]) for rows in token_budget_batches([len(t) for t in tokens], max_tokens)]


def cpu_flags() -> str:
    """The CPU's bf16/fp16 instruction-set flags among ``ISA_FLAGS`` (protkit.models.cpu reads them)."""
    flags = this_cpu().flags
    return ", ".join(f for f in ISA_FLAGS if f in flags) or "none of " + ", ".join(ISA_FLAGS)


def error_row(label: str, precision: str, e: Errors) -> list[str]:
    return [
        label, precision, f"{e.mse:.1e}", f"{ESMPP_MSE[precision]:.1e}", f"{e.relative_l2:.1e}",
        f"{e.residue_cosine_p1:.5f}", f"{e.pooled_cosine_min:.5f}", "yes" if e.within_limits() else "NO",
    ]


def limit_goal(label: str, precision: str, e: Errors) -> Goal:
    condition = (f"residue cosine p1 {e.residue_cosine_p1:.5f} >= {RESIDUE_COSINE_P1}; "
                 f"min pooled cosine {e.pooled_cosine_min:.5f} >= {POOLED_COSINE}")
    met = e.residue_cosine_p1 >= RESIDUE_COSINE_P1 and e.pooled_cosine_min >= POOLED_COSINE
    return CeilingGoal(f"{label} {precision} vs fp32: relative L2 of the last hidden state (FastPLMs' limits)",
                       REL_L2_LIMIT, e.relative_l2, condition, met)


def notes(s: Settings, labels: dict[str, str], student: ProtHash, outputs: dict[str, dict[str, Outputs]],
          whole: dict[str, float]) -> list[str]:
    """The notes under B11's table: models, sample, metric definitions, references, CPU."""
    scale = ", ".join(f"{labels[r]} {float((outputs[r]['fp32'].residues.double() ** 2).mean()):.2f}" for r in labels)
    seconds = ", ".join(f"{labels[r]} " + "/".join(f"{o.seconds:.1f}" for o in outputs[r].values()) for r in labels)
    return [
        f"Models: {labels['teacher']} ({s.teacher.to_dict()}) and {labels['student']} "
        f"(d_model {student.config.d_model}, teacher width {student.config.teacher_dim}), seeded random weights "
        "(ESMC's trained weights cannot be downloaded here); each cast whole with model.to(dtype), token ids int64. "
        "Trained weights may carry larger activations (outlier features), so their errors, and fp16's overflow "
        "risk, can differ.",
        f"Sequences: {sample_note(s.max_residues)}, in length-sorted padded batches of at most {s.max_tokens} tokens "
        "(as B1); every metric uses residue positions only (no CLS, EOS or padding).",
        "Metrics on the last hidden state at residue positions (the teacher's after its final norm, width "
        f"{s.teacher.d_model}; the student's native, width {student.config.d_model}): MSE over all elements, "
        "relative L2 = ||x - y|| / ||y|| over all of them, p1 = 1st percentile of per-residue cosines. Pooled: "
        "mean over residues, pooled in fp32 as protkit embed pools; the student's in the teacher's width (adapter "
        "output). fp32 pooling here matches ProtHash.embed_teacher(..., 'mean') in fp32 "
        f"(min cosine {whole['fp32']:.6f}).",
        "embed_teacher run whole in the low precision (pooling in it too), against fp32: min pooled cosine "
        + ", ".join(f"{p} {whole[p]:.5f}" for p in PRECISIONS) + ".",
        "References: ESM++'s published MSE vs fp32 (fp16 3e-8, bf16 1.4e-6, trained weights) and FastPLMs' bf16 "
        f"parity limits (relative L2 <= {REL_L2_LIMIT:g}, residue cosine p1 >= {RESIDUE_COSINE_P1}, pooled cosine >= "
        f"{POOLED_COSINE}); the goals hold both low precisions to FastPLMs' limits. MSE is not scale-free (about "
        f"relative L2 squared times the mean square of the fp32 values: {scale} here), so ESM++'s MSE compares "
        "only as an order of magnitude and is not a goal.",
        f"CPU instruction sets for bf16/fp16: {cpu_flags()}. Forward wall time fp32/bf16/fp16 (one pass, for scale "
        f"only, not a speed comparison): {seconds} s.",
    ]


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = settings(device, quick)
    tokens = tokenize(sample_proteins(s.n_sequences, data_dir, max_residues=s.max_residues))
    batches = length_sorted_batches(tokens, s.max_tokens)
    teacher = random_esmc(s.teacher, seed=0).to(device)
    student = student_model(quick, device)
    labels = {"teacher": "tiny ESMC" if quick else "esmc_300m",
              "student": "tiny ProtHash" if quick else "ProtHash-V2-384-Tiny"}
    outputs = {"teacher": by_precision(teacher, teacher_hidden, batches, device),
               "student": by_precision(student, student_hidden, batches, device)}
    whole = embed_teacher_cosines(student, batches, outputs["student"], device)

    table = Table(
        f"B11 precision vs fp32, {length_summary(tokens)}, {len(batches)} padded batches",
        ["model", "precision", "MSE vs fp32", "ESM++ published MSE", f"relative L2 (limit <= {REL_L2_LIMIT:g})",
         f"residue cosine p1 (>= {RESIDUE_COSINE_P1})", f"min pooled cosine (>= {POOLED_COSINE})",
         "within FastPLMs' limits"],
    )
    result = Result(KEY, TITLE, device_name(device), tables=[table])
    for role, label in labels.items():
        for precision in PRECISIONS:
            e = errors(outputs[role][precision], outputs[role]["fp32"])
            table.rows.append(error_row(label, precision, e))
            result.goals.append(limit_goal(label, precision, e))
    result.require(whole["fp32"] >= FP32_POOLING_COSINE,
                   f"fp32 pooling here vs embed_teacher: min cosine {whole['fp32']:.6f} < {FP32_POOLING_COSINE}")
    result.notes += notes(s, labels, student, outputs, whole)
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
