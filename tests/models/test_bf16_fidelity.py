"""bf16 against fp32 on real proteins, through protkit's own embedding path (``load_embedder``'s runners,
length-sorted token-budget batches): the guards ``auto`` relies on where it picks bf16 (CPUs with bf16
units) hold for the student and the teacher. Seeded random weights at the real shapes (ESMC-300M with the
default attention gain; the Hub is unreachable here); on a CPU without bf16 units bf16 is emulated, slowly,
with the same rounding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from protkit.embed.embedder import TorchRunner, embed_token_lists, teacher_forward
from protkit.embed.loading import CPU_MAX_TOKENS, load_embedder
from protkit.models.esmc import ESMC_PRESETS, random_esmc
from protkit.models.precision import BF16_POOLED_COSINE, BF16_RESIDUE_COSINE_P1
from protkit.models.prothash import PRESETS, ProtHash
from protkit.sequences.tokenize import encode_one

POOLINGS = ["mean", "cls"]
CPU = torch.device("cpu")


@dataclass
class Fidelity:
    pooled_min: dict[str, float]  # pooling -> min over proteins
    residue_p1: float  # 1st percentile over residues

    def check(self) -> None:
        for pooling, cosine in self.pooled_min.items():
            assert cosine >= BF16_POOLED_COSINE, f"{pooling}: min pooled cosine {cosine:.6f}"
        assert self.residue_p1 >= BF16_RESIDUE_COSINE_P1, f"1st-percentile residue cosine {self.residue_p1:.5f}"


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def fidelity(low, reference, tokens: list[list[int]], dim: int) -> Fidelity:
    runs = [embed_token_lists(r, tokens, POOLINGS, dim, CPU_MAX_TOKENS, CPU, residues=True) for r in (low, reference)]
    (pooled, residues), (pooled_ref, residues_ref) = runs
    per_residue = np.concatenate([cosine_rows(a, b) for a, b in zip(residues, residues_ref)])
    return Fidelity({p: float(cosine_rows(pooled[p], pooled_ref[p]).min()) for p in POOLINGS},
                    float(np.percentile(per_residue, 1)))


def real_tokens(records, n: int, max_residues: int) -> list[list[int]]:
    return [encode_one(r.sequence) for r in records if len(r.sequence) <= max_residues][:n]


def test_bf16_student_keeps_the_fp32_vectors(shared_records, tmp_path: Path) -> None:
    """ProtHash-V2-384-Tiny (the shape B7 times), torch bf16 as ``auto`` runs it on AMX CPUs."""
    torch.manual_seed(0)
    ProtHash(PRESETS["ProtHash-V2-384-Tiny"]).save_pretrained(tmp_path / "student")
    fp32, bf16 = (load_embedder(tmp_path / "student", device="cpu", backend="torch", precision=p)
                  for p in ("fp32", "bf16"))
    assert bf16.precision == "bf16" and next(bf16.model.parameters()).dtype == torch.bfloat16
    fidelity(bf16.runner, fp32.runner, real_tokens(shared_records, 32, 510), fp32.dim).check()


@pytest.mark.slow
def test_bf16_teacher_keeps_the_fp32_vectors(shared_records) -> None:
    """ESMC-300M whole in bf16 (the teacher cache's and ``protkit embed``'s bf16) against fp32."""
    teacher = random_esmc(ESMC_PRESETS["esmc_300m"], seed=0)
    fp32 = TorchRunner(teacher_forward(teacher), None, torch.float32)
    teacher_bf16 = random_esmc(ESMC_PRESETS["esmc_300m"], seed=0).to(torch.bfloat16)
    bf16 = TorchRunner(teacher_forward(teacher_bf16), None, torch.bfloat16)
    tokens = real_tokens(shared_records, 6, 150)
    fidelity(bf16, fp32, tokens, teacher.config.d_model).check()
