"""B2 student vs teacher: ProtHash-V2-384-Tiny against protkit's esmc_300m (both seeded random
weights, fp32), on B1's sequences with the same length-sorted token-budget batching, through
protkit's embedding loop (``protkit.embed.embedder.pooled_embeddings``, mean pooling). On a CPU the
student also runs as ``protkit embed`` runs it there (onnxruntime fp32, and int8 with ``--int8``),
and the goal takes the fastest student path whose vectors keep cosine >= 0.999 to torch fp32."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.b1_teacher import settings as b1_settings
from benchmarks.common import (
    Goal, Result, Table, batch_runner, cosines, device_name, embedder, forward_flops, interleaved, length_summary,
    nonembedding_params, rate, residues, sample_note, sample_proteins, saved_student, scratch_cache, spread,
    strided_rounds, student_model, tokenize,
)
from protkit.embed.embedder import student_forward, teacher_forward
from protkit.embed.loading import load_embedder
from protkit.models.esmc.weights import random_esmc
from protkit.sequences.tokenize import pad_batch

KEY, TITLE = "B2", "student vs teacher: ProtHash-V2-384-Tiny vs esmc_300m"
GOAL = 50.0
STUDENT_REPEATS = 3
ALONE_COSINE = 0.99999  # a batched vector against the same sequence embedded alone, unpadded
GOAL_COSINE = 0.999  # a faster student path counts for the goal only if it keeps this to torch fp32
ONNX_PATHS = {"student, onnxruntime fp32": False, "student, onnxruntime int8": True}  # CPU only


def alone(forward, token_list: list[int], device: torch.device) -> np.ndarray:
    """Mean-pooled vector of one sequence, unpadded and unmasked.  # (D,)"""
    batch = pad_batch([token_list]).to(device)
    with torch.inference_mode():
        hidden = forward(batch.input_ids, None).float()[0, 1:-1]  # (residues, D)
    return hidden.mean(0).cpu().numpy()


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = b1_settings(device, quick)
    proteins = sample_proteins(s.n_sequences, data_dir, max_residues=s.max_residues)
    tokens = tokenize(proteins)
    teacher = random_esmc(s.config, seed=0).to(device)
    student = student_model(quick, device)
    forwards = {"teacher": teacher_forward(teacher), "student": student_forward(student)}
    labels = ["tiny ESMC" if quick else "esmc_300m", "tiny ProtHash" if quick else "ProtHash-V2-384-Tiny"]
    dims = [s.config.d_model, student.config.teacher_dim]
    variants = {name: embedder(f, tokens, d, s.max_tokens, device) for (name, f), d in zip(forwards.items(), dims)}
    names = list(variants)
    rounds = strided_rounds(len(tokens), s.rounds)
    shortest = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))[:2]
    with tempfile.TemporaryDirectory(prefix="protkit-b2-") as tmp, scratch_cache(Path(tmp)):
        if device.type == "cpu":
            directory = saved_student(student, Path(tmp) / "student")
            for name, int8 in ONNX_PATHS.items():
                runner = load_embedder(directory, int8=int8, backend="onnxruntime", device=device, poolings=["mean"]).runner
                variants[name] = batch_runner(runner, tokens, dims[1], s.max_tokens, device)
        repeats = {name: STUDENT_REPEATS for name in list(variants)[1:]}
        timings = interleaved(variants, rounds, [shortest], device, repeats=repeats)

    result = Result(KEY, TITLE, device_name(device))
    lengths = [len(t) for t in tokens]
    flops = {
        names[0]: forward_flops(nonembedding_params(teacher), s.config.n_layers, s.config.d_model, lengths),
        names[1]: forward_flops(nonembedding_params(student), student.config.n_layers, student.config.d_model, lengths),
    }
    table = Table(
        f"B2 embedding throughput, {length_summary(tokens)}, token budget {s.max_tokens}, {len(rounds)} interleaved rounds",
        ["role", "model", "parameters", "residues/s", "speed-up vs teacher (median [min-max])", "useful GFLOP/s",
         "min cosine, batched vs alone"],
    )
    for (name, forward), model, label in zip(forwards.items(), (teacher, student), labels):
        check = sorted(timings.outputs[name][0], key=lambda i: len(tokens[i]))[:2]  # two shortest of round 1
        batched = np.stack([timings.outputs[name][0][i] for i in check])
        single = np.stack([alone(forward, tokens[i], device) for i in check])
        cosine = float(cosines(batched, single).min())
        seconds = timings.total(name)
        table.rows.append([
            name, label, f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M", rate(residues(tokens) / seconds),
            spread(timings.speedups(name, names[0])), f"{flops[name] / seconds / 1e9:.1f}", f"{cosine:.6f}",
        ])
        result.require(cosine >= ALONE_COSINE, f"{name}: batched vs alone cosine {cosine:.6f} < {ALONE_COSINE}")
    best, best_cosine = names[1], 1.0
    reference = timings.stacked(names[1], len(tokens))
    for name in list(variants)[2:]:
        cosine = float(cosines(timings.stacked(name, len(tokens)), reference).min())
        table.rows.append([name, "ProtHash-V2-384-Tiny" if not quick else "tiny ProtHash", table.rows[1][2],
                           rate(residues(tokens) / timings.total(name)), spread(timings.speedups(name, names[0])),
                           f"{flops[names[1]] / timings.total(name) / 1e9:.1f}", f"to torch fp32: {cosine:.6f}"])
        if cosine >= GOAL_COSINE and timings.speedup(name, names[0]) > timings.speedup(best, names[0]):
            best, best_cosine = name, cosine
    result.tables.append(table)
    result.goals.append(Goal(f"{best} vs teacher, residues/s", GOAL, timings.speedup(best, names[0]),
                             f"min cosine to torch fp32 {best_cosine:.5f} >= {GOAL_COSINE}"))
    result.notes += [
        f"Same sequences as B1 ({sample_note(s.max_residues)}) and the same batching for both models: "
        f"protkit.embed.embedder.pooled_embeddings (length-sorted, {s.max_tokens} padded tokens per batch, mean pooling, "
        "inference_mode).",
        f"Students timed {STUDENT_REPEATS} times per round (median), teacher once. On a CPU the student also "
        "runs in onnxruntime (fp32 and int8, loaded by load_embedder as protkit embed does); the goal row names "
        f"the fastest student path with min cosine >= {GOAL_COSINE} to the torch fp32 student.",
        "Correctness: the two shortest sequences of round 1 re-embedded alone (no padding, no mask) "
        f"must give cosine >= {ALONE_COSINE} with their batched vectors.",
    ]
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
