"""B4 batching: the student in protkit's length-sorted padded batches (``pooled_embeddings``)
against ProtHash's usage pattern, one sequence at a time with no attention mask. Same model
(ProtHash-V2-384-Tiny, seeded random weights, fp32), same sequences, both under
``torch.inference_mode``, both giving mean-pooled vectors in the teacher's width."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    Goal, Result, Table, cosines, device_name, embedder, interleaved, length_summary, rate, residues, sample_note,
    sample_proteins, spread, strided_rounds, student_model, tokenize,
)
from protkit.embedders import student_forward
from protkit.models.prothash import ProtHash

KEY, TITLE = "B4", "batching: sorted padded batches vs one sequence at a time"
GOAL = 3.0
SAME_COSINE = 0.99999  # batched and one-at-a-time vectors of a sequence must agree


@dataclass(frozen=True)
class Settings:
    n_sequences: int
    max_residues: int | None  # None: lengths as they come (truncated at 1022 residues)
    max_tokens: int
    rounds: int


FULL = Settings(1000, None, 16384, 4)
QUICK = Settings(12, 200, 1024, 2)


def one_at_a_time(model: ProtHash, tokens: list[list[int]], device: torch.device):
    """ProtHash's pattern: ``model(input_ids)`` per sequence, no mask, then mean pooling."""
    def run(items: Sequence[int]) -> dict[int, np.ndarray]:
        out = {}
        with torch.inference_mode():
            for i in items:
                ids = torch.tensor([tokens[i]], device=device)  # (1, L)
                out[i] = model.embed_teacher(ids, pooling="mean")[0].float().cpu().numpy()
        return out
    return run


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = QUICK if quick else FULL
    tokens = tokenize(sample_proteins(s.n_sequences, data_dir, max_residues=s.max_residues))
    model = student_model(quick, device)
    variants = {
        "one at a time, no mask (ProtHash usage)": one_at_a_time(model, tokens, device),
        f"sorted padded batches ({s.max_tokens} tokens)": embedder(
            student_forward(model), tokens, model.config.teacher_dim, s.max_tokens, device),
    }
    single, batched = variants
    rounds = strided_rounds(len(tokens), s.rounds)
    by_length = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    timings = interleaved(variants, rounds, [by_length[:4]], device)

    order = list(range(len(tokens)))
    vectors = {name: {i: v for out in timings.outputs[name] for i, v in out.items()} for name in variants}
    agreement = cosines(np.stack([vectors[batched][i] for i in order]), np.stack([vectors[single][i] for i in order]))
    n_res = residues(tokens)
    table = Table(
        f"B4 student embedding, {length_summary(tokens)}, {len(rounds)} interleaved rounds",
        ["pattern", "residues/s", "speed-up vs one at a time (median [min-max])", "min cosine batched vs single"],
    )
    for name in variants:
        table.rows.append([name, rate(n_res / timings.total(name)), spread(timings.speedups(name, single)),
                           f"{agreement.min():.7f}"])
    result = Result(KEY, TITLE, device_name(device), tables=[table])
    result.goals.append(Goal(f"sorted batches vs one at a time on {len(tokens):,} sequences", GOAL,
                             timings.speedup(batched, single)))
    result.require(agreement.min() >= SAME_COSINE,
                   f"batched and one-at-a-time vectors disagree: min cosine {agreement.min():.7f} < {SAME_COSINE}")
    result.notes += [
        f"Model: {'tiny test config' if quick else 'ProtHash-V2-384-Tiny'}, seeded random weights, fp32.",
        f"Sequences: {sample_note(s.max_residues)}.",
        "Batched: protkit.embedders.pooled_embeddings (length-sorted, key-padding mask). One at a time: "
        "ProtHash.embed_teacher on a (1, L) batch without a mask, as ProtHash's own examples call the model.",
    ]
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
