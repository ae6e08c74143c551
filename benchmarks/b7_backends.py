"""B7 CPU backends: the student in torch and onnxruntime, fp32, bf16 and int8, and the token budget.

Same model (ProtHash-V2-384-Tiny, seeded random weights), same sequences (real proteins of at
most 510 residues), same length-sorted batches, all through protkit's embedding loop
(``protkit.embed.embedder.embed_token_lists``) with the runners ``protkit embed`` uses
(``protkit.embed.loading.load_embedder`` on a saved student directory): torch eager fp32 (the
baseline), torch bf16, torch int8 (torchao dynamic, the student's ``int8/`` form), onnxruntime fp32
and onnxruntime int8 (``quantize_dynamic``, per-channel, reduce_range). Beside each: cosine to torch
fp32 and the share of this machine's fp32 matmul peak, measured in the same run. These rows, per CPU
capability class, are the table ``--backend auto --precision auto`` chooses from
(``protkit/embed/cpu_paths.json``; ``python -m benchmarks.cpu_paths`` records this machine's class),
and the goal checks the path chosen here against onnxruntime fp32, today's default. A second table times
every token budget, and one sequence at a time, for torch and onnxruntime fp32. CPU only (GPUs run torch).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import (
    Goal, Result, Table, batch_runner, cosines, device_name, forward_flops, interleaved, length_summary, matmul_peak,
    nonembedding_params, rate, residues, sample_note, sample_proteins, saved_student, scratch_cache, spread,
    strided_rounds, student_model, tokenize,
)
from protkit.embed.cpu_paths import MIN_COSINE, choose_cpu_path, measured_classes
from protkit.embed.loading import CPU_MAX_TOKENS, load_embedder
from protkit.models.cpu import this_cpu

KEY, TITLE = "B7", "CPU backends: torch vs onnxruntime, fp32, bf16 and int8, token budgets"
GOAL_SPEEDUP, GOAL_COSINE = 1.5, MIN_COSINE  # best CPU path vs torch eager fp32, at this cosine
GOAL_AUTO_BF16 = 1.4  # auto's path vs onnxruntime fp32 on CPUs with bf16 units (issue 25); elsewhere the same path
GOAL_BATCHING = 1.0  # the default budget never slower than one sequence at a time, same backend (B4: vs ProtHash)
SAME_COSINE = 0.99999  # onnxruntime fp32 against torch fp32


@dataclass(frozen=True)
class Settings:
    n_sequences: int
    max_residues: int
    max_tokens: int  # budget of the backend table
    budgets: tuple[int, ...]  # budgets of the batching table (1: one sequence at a time)
    rounds: int


FULL = Settings(256, 510, CPU_MAX_TOKENS, (1, 512, 1024, 2048, 4096, 16384), 4)
QUICK = Settings(12, 120, 1024, (1, 512, 1024), 2)

TORCH_FP32, ORT_FP32, ORT_INT8 = "torch fp32", "onnxruntime fp32", "onnxruntime int8"
TORCH_BF16, TORCH_INT8 = "torch bf16", "torch int8"
# name -> (backend, int8, precision): the names protkit/embed/cpu_paths.json uses
BACKENDS = {TORCH_FP32: ("torch", False, "fp32"), TORCH_BF16: ("torch", False, "bf16"),
            TORCH_INT8: ("torch", True, "fp32"), ORT_FP32: ("onnxruntime", False, "fp32"),
            ORT_INT8: ("onnxruntime", True, "fp32")}
SPEED_FIGURE, COSINE_FIGURE = "{} residues/s", "{} min cosine"  # Result.figures keys per path


def budget_name(backend: str, budget: int) -> str:
    return f"{backend}, {'one at a time' if budget == 1 else f'{budget} tokens'}"


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    result = Result(KEY, TITLE, device_name(device))
    if device.type != "cpu":
        result.status, result.message = "skipped", "CPU backends only; GPUs run torch (B2, B4)"
        return result
    s = QUICK if quick else FULL
    tokens = tokenize(sample_proteins(s.n_sequences, data_dir, max_residues=s.max_residues))
    model = student_model(quick, device)
    dim = model.config.teacher_dim
    with tempfile.TemporaryDirectory(prefix="protkit-b7-") as tmp, scratch_cache(Path(tmp)):
        directory = saved_student(model, Path(tmp) / "student")
        runners, load_seconds = {}, {}
        for name, (backend, int8, precision) in BACKENDS.items():
            start = time.perf_counter()
            runners[name] = load_embedder(directory, int8=int8, backend=backend, precision=precision, device=device,
                                          poolings=["mean"]).runner
            load_seconds[name] = time.perf_counter() - start
        _backend_table(result, s, tokens, model, runners, load_seconds, device)
        _budget_table(result, s, tokens, dim, runners, device)
    result.notes += [
        f"Model: {'tiny test config' if quick else 'ProtHash-V2-384-Tiny'}, seeded random weights; "
        f"{torch.get_num_threads()} threads for torch and for onnxruntime.",
        f"Sequences: {sample_note(s.max_residues)}.",
        "Loading: `load_embedder` on a saved student directory, as `protkit embed` does; for onnxruntime "
        "that includes the one-time ONNX export (cached afterwards), for torch int8 the quantization, shown as "
        "load seconds.",
        f"CPU: {this_cpu().describe()}. torch bf16 runs on bf16 units only where the class has them "
        "(amx, avx512-bf16); elsewhere it is emulated, and torch int8 without int8 dot products can saturate.",
        "% of fp32 peak: useful FLOPs (2 x non-embedding parameters x residues + attention, no padding) "
        "per second over a 2048 x 2048 fp32 matmul timed in the same run.",
    ]
    return result


def _backend_table(result: Result, s: Settings, tokens, model, runners, load_seconds, device) -> None:
    dim = model.config.teacher_dim
    variants = {name: batch_runner(r, tokens, dim, s.max_tokens, device) for name, r in runners.items()}
    rounds = strided_rounds(len(tokens), s.rounds)
    shortest = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))[:4]
    timings = interleaved(variants, rounds, [shortest], device)
    peak = matmul_peak(device)
    flops = forward_flops(nonembedding_params(model), model.config.n_layers, model.config.d_model,
                          [len(t) for t in tokens])
    reference = timings.stacked(TORCH_FP32, len(tokens))
    table = Table(
        f"B7 backends, {length_summary(tokens)}, {s.max_tokens} padded tokens per batch, {len(rounds)} interleaved rounds",
        ["backend", "residues/s", "speed-up vs torch fp32 (median [min-max])", "cosine to torch fp32 (mean / min)",
         "% of fp32 matmul peak", "load s"],
    )
    best, best_speedup, best_cosine = None, 0.0, 0.0
    for name in variants:
        cos = cosines(timings.stacked(name, len(tokens)), reference)
        seconds = timings.total(name)
        speedup = timings.speedup(name, TORCH_FP32)
        table.rows.append([name, rate(residues(tokens) / seconds), spread(timings.speedups(name, TORCH_FP32)),
                           f"{cos.mean():.6f} / {cos.min():.6f}", f"{100 * flops / seconds / peak:.1f}%",
                           f"{load_seconds[name]:.1f}"])
        result.figures[SPEED_FIGURE.format(name)] = residues(tokens) / seconds
        result.figures[COSINE_FIGURE.format(name)] = float(cos.min())
        if name != TORCH_FP32 and cos.min() >= GOAL_COSINE and speedup > best_speedup:
            best, best_speedup, best_cosine = name, speedup, float(cos.min())
        if name == ORT_FP32:
            result.require(cos.min() >= SAME_COSINE, f"onnxruntime fp32 vs torch fp32: min cosine {cos.min():.7f}")
    result.tables.append(table)
    _auto_goal(result, timings, len(tokens))
    label = f"best CPU path ({best or 'none'}) vs torch eager fp32"
    result.goals.append(Goal(label, GOAL_SPEEDUP, best_speedup if best else None,
                             f"min cosine {best_cosine:.5f} >= {GOAL_COSINE}" if best else f"cosine >= {GOAL_COSINE}",
                             best is not None))
    result.notes.append(f"Fastest path at min cosine >= {GOAL_COSINE}: {best or 'none'}; matmul peak "
                        f"{peak / 1e9:.0f} GFLOP/s.")


def measured_entry(result: Result) -> dict:
    """B7's rows as a ``protkit/embed/cpu_paths.json`` entry: residues/s and min cosine per path."""
    names = [n for n in BACKENDS if SPEED_FIGURE.format(n) in result.figures]
    return {"residues_per_s": {n: round(result.figures[SPEED_FIGURE.format(n)]) for n in names},
            "min_cosine": {n: round(result.figures[COSINE_FIGURE.format(n)], 6) for n in names}}


def _auto_goal(result: Result, timings, n_items: int) -> None:
    """The path ``auto`` takes on this CPU (the shipped table's choice for its class) against onnxruntime
    fp32: >= 1.4x where the class has bf16 units; elsewhere the default must be today's path."""
    cpu = this_cpu()
    path = choose_cpu_path(cpu, int8=False)
    name = f"{path.backend} {path.precision}"
    reference = timings.stacked(TORCH_FP32, n_items)
    cos = cosines(timings.stacked(name, n_items), reference)
    label = f"protkit embed's default on class {cpu.capability_class} ({name}) vs onnxruntime fp32"
    condition = f"min cosine {cos.min():.5f} >= {GOAL_COSINE}"
    if name == ORT_FP32 and not cpu.bf16_units:  # today's default kept: the same path, the same numbers
        result.goals.append(Goal(label, 1.0, 1.0, "the same path as before issue 25, so never slower"))
    else:
        target = GOAL_AUTO_BF16 if cpu.bf16_units else 1.0
        result.goals.append(Goal(label, target, timings.speedup(name, ORT_FP32), condition,
                                 bool(cos.min() >= GOAL_COSINE)))
    result.notes.append(f"auto on this CPU: {name} ({path.reason}).")
    for klass, entry in measured_classes().items():
        if klass != cpu.capability_class:
            result.notes.append(f"Not measured here, class {klass}: the table's entry is {entry['source']} on "
                                f"{entry['cpu']}; re-measure it there with python -m benchmarks.cpu_paths.")


def _budget_table(result: Result, s: Settings, tokens, dim, runners, device) -> None:
    variants = {budget_name(b, budget): batch_runner(runners[b], tokens, dim, budget, device)
                for b in (TORCH_FP32, ORT_FP32) for budget in s.budgets}
    rounds = strided_rounds(len(tokens), s.rounds)
    shortest = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))[:4]
    timings = interleaved(variants, rounds, [shortest], device)
    table = Table(
        f"B7 token budget: batched vs one sequence at a time, {length_summary(tokens)}, {len(rounds)} interleaved rounds",
        ["backend, budget", "residues/s", "speed-up vs one at a time, same backend (median [min-max])",
         "speed-up vs torch one at a time"],
    )
    for backend in (TORCH_FP32, ORT_FP32):
        single = budget_name(backend, 1)
        for budget in s.budgets:
            name = budget_name(backend, budget)
            table.rows.append([name, rate(residues(tokens) / timings.total(name)),
                               spread(timings.speedups(name, single)),
                               f"{timings.speedup(name, budget_name(TORCH_FP32, 1)):.2f}x"])
    result.tables.append(table)
    default = budget_name(ORT_FP32, s.max_tokens)
    if default in variants:
        result.goals.append(Goal(f"protkit embed's CPU default ({default}) vs one at a time", GOAL_BATCHING,
                                 timings.speedup(default, budget_name(ORT_FP32, 1))))
    fastest = min(variants, key=timings.total)
    result.notes.append(f"Fastest budget measured: {fastest}; the CPU default is {CPU_MAX_TOKENS} tokens. torchao's "
                        "int8 under torch.compile is measured in B3.")


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
