"""B4 batching: the student in protkit's length-sorted padded batches against ProtHash's usage
pattern, one sequence at a time with no attention mask. Same model (ProtHash-V2-384-Tiny, seeded
random weights, fp32), same sequences, all giving mean-pooled vectors in the teacher's width.
Batched twice: torch with ``pooled_embeddings`` at a fixed budget, and what ``protkit embed`` runs
by default on the device (``load_embedder`` defaults: onnxruntime on a CPU, torch on a GPU, with
``default_max_tokens``)."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    Goal, Result, Table, batch_runner, cosines, device_name, embedder, interleaved, length_summary, rate, residues,
    sample_note, sample_proteins, saved_student, scratch_cache, spread, strided_rounds, student_model, tokenize,
)
from protkit.embed.embedder import student_forward
from protkit.embed.loading import default_max_tokens, load_embedder
from protkit.models.prothash.model import ProtHash

KEY, TITLE = "B4", "batching: sorted padded batches vs one sequence at a time"
GOAL = 3.0  # torch sorted batches vs one at a time
DEFAULT_GOALS = {"cpu": 1.2, "cuda": 10.0}  # protkit embed's default batching vs one at a time
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
    with tempfile.TemporaryDirectory(prefix="protkit-b4-") as tmp, scratch_cache(Path(tmp)):
        default = load_embedder(saved_student(model, Path(tmp) / "student"), device=device, poolings=["mean"])
        budget = default_max_tokens(default)
        variants = {
            "one at a time, no mask (ProtHash usage)": one_at_a_time(model, tokens, device),
            f"torch sorted padded batches ({s.max_tokens} tokens)": embedder(
                student_forward(model), tokens, model.config.teacher_dim, s.max_tokens, device),
            f"protkit embed default ({default.backend}, {budget} tokens)": batch_runner(
                default.runner, tokens, default.dim, budget, device),
        }
        result = _measure(variants, tokens, s, device, quick)
    return result


def _measure(variants, tokens: list[list[int]], s: Settings, device: torch.device, quick: bool) -> Result:
    single, batched, default = variants
    rounds = strided_rounds(len(tokens), s.rounds)
    by_length = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    timings = interleaved(variants, rounds, [by_length[:4]], device)

    stacked = {name: timings.stacked(name, len(tokens)) for name in variants}
    agreement = np.minimum(cosines(stacked[batched], stacked[single]), cosines(stacked[default], stacked[single]))
    n_res = residues(tokens)
    table = Table(
        f"B4 student embedding, {length_summary(tokens)}, {len(rounds)} interleaved rounds",
        ["pattern", "residues/s", "speed-up vs one at a time (median [min-max])", "min cosine batched vs single"],
    )
    for name in variants:
        table.rows.append([name, rate(n_res / timings.total(name)), spread(timings.speedups(name, single)),
                           f"{agreement.min():.7f}"])
    result = Result(KEY, TITLE, device_name(device), tables=[table])
    result.goals.append(Goal(f"torch sorted batches vs one at a time on {len(tokens):,} sequences", GOAL,
                             timings.speedup(batched, single)))
    result.goals.append(Goal(f"{default} vs one at a time", DEFAULT_GOALS[device.type],
                             timings.speedup(default, single)))
    result.require(agreement.min() >= SAME_COSINE,
                   f"batched and one-at-a-time vectors disagree: min cosine {agreement.min():.7f} < {SAME_COSINE}")
    result.notes += [
        f"Model: {'tiny test config' if quick else 'ProtHash-V2-384-Tiny'}, seeded random weights, fp32.",
        f"Sequences: {sample_note(s.max_residues)}.",
        "Batched: protkit.embed.embedder.pooled_embeddings (torch, length-sorted, key-padding mask), and the runner "
        "and token budget protkit embed picks by default for the device. One at a time: "
        "ProtHash.embed_teacher on a (1, L) batch without a mask, as ProtHash's own examples call the model.",
    ]
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
