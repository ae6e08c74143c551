"""B2 student vs teacher: ProtHash-V2-384-Tiny and the ProtHash 1.0 student (ProtHash-1.0-960, four
stages) against protkit's esmc_300m (all seeded random weights, fp32), on B1's sequences with the
same length-sorted token-budget batching, through protkit's embedding loop
(``protkit.embed.embedder.pooled_embeddings``, mean pooling; the 1.0 student's stage 4 through its
adapter, as ``protkit embed`` runs it). The V2 student also runs in torch bf16 and, on a CPU, as
``protkit embed`` runs it there (onnxruntime fp32, and int8 with ``--int8``), and its goal takes the
fastest student path whose vectors keep cosine >= 0.999 to torch fp32; the 1.0 student runs in torch
fp32 only and has a goal of its own."""

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
from protkit.models.cpu import this_cpu
from protkit.models.esmc.weights import random_esmc
from protkit.models.prothash_v1 import PRESETS as V1_PRESETS
from protkit.models.prothash_v1 import StagedConfig, StagedProtHash
from protkit.sequences.tokenize import pad_batch

KEY, TITLE = "B2", "student vs teacher: ProtHash-V2-384-Tiny and ProtHash-1.0-960 vs esmc_300m"
GOAL = 50.0
# The 1.0 student has 8.5x fewer useful FLOPs than esmc_300m on B2's CPU sample (38.3M vs 332.9M
# non-embedding parameters used, 12 layers of 512 vs 30 of 960): 10x would need it to run 1.2x as many
# FLOP/s as the teacher, which a narrower model is not expected to on a matmul-bound CPU (measured: about
# 1.0x, 2026-12-07). 6x asks it to keep the share of its FLOP ratio that V2's 50x asks of V2 (50x of 73.5x).
V1_GOAL = 6.0
V1 = "ProtHash-1.0-960"
V1_QUICK = StagedConfig(d_model=32, heads=4, hidden_ratio=2, stage_layers=(1, 1, 1, 1), context_length=1024,
                        teacher="unknown", teacher_dim=64)
V1_STAGE = 4
STUDENT_REPEATS = 3
ALONE_COSINE = 0.99999  # a batched vector against the same sequence embedded alone, unpadded
GOAL_COSINE = 0.999  # a faster student path counts for the goal only if it keeps this to torch fp32
# more paths of the V2 student, as protkit embed loads them: name -> (backend, int8, precision); onnxruntime on CPUs
STUDENT_PATHS = {"student, torch bf16": ("torch", False, "bf16"), "student, onnxruntime fp32": ("onnxruntime", False, "fp32"),
                 "student, onnxruntime int8": ("onnxruntime", True, "fp32")}


def alone(forward, token_list: list[int], device: torch.device) -> np.ndarray:
    """Mean-pooled vector of one sequence, unpadded and unmasked.  # (D,)"""
    batch = pad_batch([token_list]).to(device)
    with torch.inference_mode():
        hidden = forward(batch.input_ids, None).float()[0, 1:-1]  # (residues, D)
    return hidden.mean(0).cpu().numpy()


def v1_model(quick: bool, device: torch.device, seed: int = 0) -> StagedProtHash:
    """The benchmarked ProtHash 1.0 student (``V1_QUICK`` with ``quick``), seeded random weights, eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StagedProtHash(V1_QUICK if quick else V1_PRESETS[V1]).to(device).eval()


def v1_forward(model: StagedProtHash):
    """Stage 4 through its adapter, per token (as ``protkit embed`` runs a 1.0 student).  # (B, L, teacher_dim)"""
    return lambda input_ids, attention_mask: model.stage_output(input_ids, attention_mask, V1_STAGE)


def v1_used_params(model: StagedProtHash) -> int:
    """Non-embedding parameters a stage-4 forward uses (the adapters of stages 1-3 stay idle)."""
    idle = sum(p.numel() for adapter in list(model.adapters)[:V1_STAGE - 1] for p in adapter.parameters())
    return nonembedding_params(model) - idle


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = b1_settings(device, quick)
    proteins = sample_proteins(s.n_sequences, data_dir, max_residues=s.max_residues)
    tokens = tokenize(proteins)
    teacher = random_esmc(s.config, seed=0).to(device)
    student = student_model(quick, device)
    v1 = v1_model(quick, device)
    forwards = {"teacher": teacher_forward(teacher), "student": student_forward(student),
                "v1 student": v1_forward(v1)}
    models = [teacher, student, v1]
    labels = ["tiny ESMC" if quick else "esmc_300m", "tiny ProtHash" if quick else "ProtHash-V2-384-Tiny",
              "tiny ProtHash 1.0" if quick else f"{V1}, stage {V1_STAGE} via adapter"]
    dims = [s.config.d_model, student.config.teacher_dim, v1.config.teacher_dim]
    variants = {name: embedder(f, tokens, d, s.max_tokens, device) for (name, f), d in zip(forwards.items(), dims)}
    names = list(variants)
    rounds = strided_rounds(len(tokens), s.rounds)
    shortest = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))[:2]
    with tempfile.TemporaryDirectory(prefix="protkit-b2-") as tmp, scratch_cache(Path(tmp)):
        more = []
        directory = saved_student(student, Path(tmp) / "student")
        for name, (backend, int8, precision) in STUDENT_PATHS.items():
            if backend == "onnxruntime" and device.type != "cpu":
                continue
            runner = load_embedder(directory, int8=int8, backend=backend, precision=precision, device=device,
                                   poolings=["mean"]).runner
            variants[name] = batch_runner(runner, tokens, dims[1], s.max_tokens, device)
            more.append(name)
        repeats = {name: STUDENT_REPEATS for name in list(variants)[1:]}
        timings = interleaved(variants, rounds, [shortest], device, repeats=repeats)

    result = Result(KEY, TITLE, device_name(device))
    lengths = [len(t) for t in tokens]
    flops = {
        names[0]: forward_flops(nonembedding_params(teacher), s.config.n_layers, s.config.d_model, lengths),
        names[1]: forward_flops(nonembedding_params(student), student.config.n_layers, student.config.d_model, lengths),
        names[2]: forward_flops(v1_used_params(v1), v1.config.n_layers, v1.config.d_model, lengths),
    }
    table = Table(
        f"B2 embedding throughput, {length_summary(tokens)}, token budget {s.max_tokens}, {len(rounds)} interleaved rounds",
        ["role", "model", "parameters", "residues/s", "speed-up vs teacher (median [min-max])", "useful GFLOP/s",
         "min cosine, batched vs alone"],
    )
    for (name, forward), model, label in zip(forwards.items(), models, labels):
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
    for name in more:
        cosine = float(cosines(timings.stacked(name, len(tokens)), reference).min())
        table.rows.append([name, "ProtHash-V2-384-Tiny" if not quick else "tiny ProtHash", table.rows[1][2],
                           rate(residues(tokens) / timings.total(name)), spread(timings.speedups(name, names[0])),
                           f"{flops[names[1]] / timings.total(name) / 1e9:.1f}", f"to torch fp32: {cosine:.6f}"])
        if cosine >= GOAL_COSINE and timings.speedup(name, names[0]) > timings.speedup(best, names[0]):
            best, best_cosine = name, cosine
    result.tables.append(table)
    result.goals.append(Goal(f"{best} vs teacher, residues/s", GOAL, timings.speedup(best, names[0]),
                             f"min cosine to torch fp32 {best_cosine:.5f} >= {GOAL_COSINE}"))
    flop_ratio = flops[names[0]] / flops[names[2]]
    result.goals.append(Goal(f"v1 student ({V1}, torch fp32) vs teacher, residues/s", V1_GOAL,
                             timings.speedup(names[2], names[0]), f"useful-FLOP ratio {flop_ratio:.1f}x"))
    result.notes += [
        f"Same sequences as B1 ({sample_note(s.max_residues)}) and the same batching for every model: "
        f"protkit.embed.embedder.pooled_embeddings (length-sorted, {s.max_tokens} padded tokens per batch, mean pooling, "
        "inference_mode).",
        f"Students timed {STUDENT_REPEATS} times per round (median), teacher once. The V2 student also runs in "
        "torch bf16 and, on a CPU, in onnxruntime (fp32 and int8), each loaded by load_embedder as protkit embed "
        f"does; its goal row names the fastest student path with min cosine >= {GOAL_COSINE} to the torch fp32 "
        f"student. CPU: {this_cpu().describe()} (bf16 is emulated without bf16 units); the teacher's bf16 is "
        "B1's second table.",
        f"v1 student: the ProtHash 1.0 student ({'V1_QUICK' if quick else V1}: "
        f"{v1.config.d_model}-d, {v1.config.heads} heads, {'/'.join(map(str, v1.config.stage_layers))} blocks per "
        f"stage, adapter to {v1.config.teacher_dim}), seeded random weights, torch fp32 (the only path protkit embed "
        f"has for it): stage {V1_STAGE}'s hidden states through its adapter (RMSNorm + Linear) per token, then "
        f"mean pooling. Its useful FLOPs count the {v1_used_params(v1) / 1e6:.1f}M non-embedding parameters a "
        f"stage-{V1_STAGE} forward uses. Its goal is {V1_GOAL:g}x, not 10x: the teacher has "
        f"{flop_ratio:.1f}x its useful FLOPs on this sample, so 10x would need the student to run "
        f"{10 / flop_ratio:.2f}x the teacher's useful GFLOP/s; {V1_GOAL:g}x asks for the share of the FLOP ratio "
        f"that the V2 goal ({GOAL:g}x) asks of V2.",
        "Correctness: the two shortest sequences of round 1 re-embedded alone (no padding, no mask) "
        f"must give cosine >= {ALONE_COSINE} with their batched vectors.",
    ]
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
