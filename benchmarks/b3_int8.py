"""B3 int8 vs fp32 student, eager and under ``torch.compile``.

The student (ProtHash-V2-384-Tiny, seeded random weights) is quantized with
``protkit.models.prothash.int8.quantize_model`` (torchao int8: ``int8_dynamic`` = int8 weights and dynamic
per-token int8 activations; ``int8_weight_only``), and every variant embeds the same sequences
through ``protkit.embed.embedder.pooled_embeddings`` (length-sorted token-budget batches, mean pooling in
the teacher's width, i.e. ``embed_teacher``). Compiled variants use
``torch.compile(dynamic=True)``; a compile failure is reported in the table, not raised.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    Goal, Result, Table, cosines, device_name, embedder, interleaved, length_summary, rate, residues, sample_note,
    sample_proteins, spread, strided_rounds, student_model, tokenize,
)
from protkit.embed.embedder import student_forward
from protkit.models.cpu import this_cpu
from protkit.models.prothash.int8 import quantize_model

log = logging.getLogger("benchmarks.b3")

KEY, TITLE = "B3", "int8 vs fp32 student, eager and torch.compile"
GOAL, GOAL_COSINE = 1.3, 0.999
SANE_COSINE = 0.99  # below this the quantized model is broken, not merely imprecise: a failure
COMPILE_COSINE = 0.9999  # a compiled model against the same model run eagerly


@dataclass(frozen=True)
class Settings:
    n_sequences: int
    max_residues: int | None  # None: lengths as they come (truncated at 1022 residues)
    max_tokens: int
    rounds: int
    compile: bool


FULL = Settings(128, None, 16384, 4, True)
QUICK = Settings(8, 200, 1024, 2, False)

FP32, INT8, INT8_WO = "fp32", "int8 dynamic", "int8 weight-only"
EAGER, COMPILED = "eager", "torch.compile"


def compile_runner(forward, tokens, dim, max_tokens, device, warmup: list[list[int]]):
    """A runner over a compiled ``forward``, compiled now on ``warmup`` (one and several
    sequences, the shapes the rounds meet) -> ``(runner or None, seconds, error message)``."""
    start = time.perf_counter()
    try:
        runner = embedder(torch.compile(forward, dynamic=True), tokens, dim, max_tokens, device)
        for items in warmup:
            runner(items)
    except Exception as err:  # reported in the table: the eager numbers still stand
        log.exception("torch.compile failed")
        message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        return None, time.perf_counter() - start, f"{type(err).__name__}: {message}"
    return runner, time.perf_counter() - start, ""


def _vectors(outputs: list[dict[int, np.ndarray]], order: list[int]) -> np.ndarray:
    merged = {i: v for round_out in outputs for i, v in round_out.items()}
    return np.stack([merged[i] for i in order])  # (N, D)


def time_variants(models: dict, tokens: list[list[int]], s: Settings, device: torch.device):
    """Compile (inductor freezing on, so weights are constants and oneDNN can prepack them) and
    time every variant -> ``(timings, labels, {compiled key: (seconds, error)})``."""
    dim = models[FP32].config.teacher_dim
    by_length = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    warmup = [by_length[:1], by_length[1:4]]
    variants = {(name, EAGER): embedder(student_forward(m), tokens, dim, s.max_tokens, device) for name, m in models.items()}
    compile_info: dict[tuple[str, str], tuple[float, str]] = {}
    with torch._inductor.config.patch(freezing=True):
        for name in (FP32, INT8):
            if not s.compile:
                compile_info[(name, COMPILED)] = (0.0, "not run in --quick (compiling takes minutes on 2 cores)")
                continue
            runner, seconds, error = compile_runner(student_forward(models[name]), tokens, dim, s.max_tokens, device, warmup)
            compile_info[(name, COMPILED)] = (seconds, error)
            if runner is not None:
                variants[(name, COMPILED)] = runner
        labels = {key: f"{key[0]}, {key[1]}" for key in [*variants, *compile_info]}
        rounds = strided_rounds(len(tokens), s.rounds)
        timings = interleaved({labels[k]: v for k, v in variants.items()}, rounds, warmup, device)
    return timings, labels, compile_info


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = QUICK if quick else FULL
    tokens = tokenize(sample_proteins(s.n_sequences, data_dir, max_residues=s.max_residues))
    fp32 = student_model(quick, device)
    models = {FP32: fp32, INT8: quantize_model(fp32, "int8_dynamic").to(device),
              INT8_WO: quantize_model(fp32, "int8_weight_only").to(device)}
    timings, labels, compile_info = time_variants(models, tokens, s, device)

    reference = _vectors(timings.outputs[labels[(FP32, EAGER)]], list(range(len(tokens))))
    n_res = residues(tokens)
    result = Result(KEY, TITLE, device_name(device))
    table = Table(
        f"B3 student embedding, {length_summary(tokens)}, token budget {s.max_tokens}, {s.rounds} interleaved rounds",
        ["variant", "residues/s", "speed-up vs fp32 eager", "speed-up vs fp32 in the same mode",
         "cosine vs fp32 eager (min / mean)", "compile time"],
    )
    cosine: dict[tuple[str, str], float] = {}
    for key in [(FP32, EAGER), (INT8, EAGER), (INT8_WO, EAGER), (FP32, COMPILED), (INT8, COMPILED)]:
        label = labels[key]
        if label not in timings.seconds:
            seconds, error = compile_info[key]
            table.rows.append([label, "-", "-", "-", "-", f"{error} ({seconds:.0f} s)" if seconds else error])
            continue
        values = cosines(_vectors(timings.outputs[label], list(range(len(tokens)))), reference)
        cosine[key] = float(values.min())
        same_mode = labels[(FP32, key[1])]
        table.rows.append([
            label, rate(n_res / timings.total(label)), spread(timings.speedups(label, labels[(FP32, EAGER)])),
            spread(timings.speedups(label, same_mode)) if same_mode in timings.seconds else "-",
            f"{values.min():.6f} / {values.mean():.6f}",
            f"{compile_info[key][0]:.0f} s" if key in compile_info else "-",
        ])
        floor = COMPILE_COSINE if key[0] == FP32 else SANE_COSINE
        result.require(cosine[key] >= floor, f"{label}: min cosine to fp32 eager {cosine[key]:.6f} < {floor}")
    result.tables.append(table)

    for mode in (EAGER, COMPILED):
        fast, slow = labels[(INT8, mode)], labels[(FP32, mode)]
        measured = timings.speedup(fast, slow) if fast in timings.seconds and slow in timings.seconds else None
        value = cosine.get((INT8, mode))
        result.goals.append(Goal(
            f"int8 dynamic vs fp32, {mode}", GOAL, measured,
            condition=f"min cosine {value:.6f} >= {GOAL_COSINE}" if value is not None else f"no {mode} run",
            condition_met=value is not None and value >= GOAL_COSINE,
        ))
    result.notes += [
        f"Student: {'tiny test config' if quick else 'ProtHash-V2-384-Tiny'}, seeded random weights (no trained "
        "student is needed for speed; cosines of a trained student can differ). Quantized with "
        "protkit.models.prothash.int8.quantize_model (every nn.Linear, adapter included; embeddings rounded to fp16).",
        f"Sequences: {sample_note(s.max_residues)}.",
        "Compiled variants: torch.compile(dynamic=True) with inductor freezing (weights as constants, prepacked "
        "by oneDNN; without it int8 compiled ran slower than fp32 compiled here), compiled before timing on one "
        "and on three sequences (the batch shapes the rounds meet); compile time is shown separately.",
        f"Cosines are over every sequence (mean pooling, teacher width); compiled fp32 must match eager fp32 to "
        f"{COMPILE_COSINE}, int8 must reach {SANE_COSINE} (else the run fails), the goal asks {GOAL_COSINE}.",
    ]
    if device.type == "cpu":
        cpu = this_cpu()
        result.notes.append(
            f"CPU: {cpu.describe()}. " + ("torchao's int8 runs on int8 dot products here; whether `protkit embed "
                                          "--int8` uses it or onnxruntime's int8 follows B7's rows for this class."
                                          if cpu.int8_dot else "Without int8 dot products torchao's int8 can "
                                          "saturate, so `protkit embed --int8` never picks it here (onnxruntime's "
                                          "int8 instead; B7).")
        )
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
