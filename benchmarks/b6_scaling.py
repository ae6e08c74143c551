"""B6 scaling: embedding throughput against the number of sequences (should stay flat), and peak
resident memory against the maximum sequence length, each length measured in a fresh subprocess.

Throughput: tokenization (``encode_one``) plus ``protkit.embed.embedder.pooled_embeddings`` (the embed
stage's batched loop) of the student, for growing nested samples. Memory: a subprocess
(``python benchmarks/b6_scaling.py --probe-memory L``) builds the student, then embeds proteins of
at least ``L`` residues truncated to ``L`` tokens; it reports its resident memory before embedding
and the peak while embedding.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import (
    DATA_DIR, REPO_ROOT, Goal, Result, Table, cosines, device_name, load_proteins, rate, residues, sample_proteins,
    student_model, synchronize, tokenize,
)
from protkit.embed.embedder import pooled_embeddings, student_forward

KEY, TITLE = "B6", "scaling: throughput vs number of sequences, memory vs sequence length"
FLATNESS = 0.8  # residues/s of every size relative to the smallest size timed beside it
SAME_COSINE = 0.99999  # a sequence's vector must not depend on which other sequences were embedded


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    max_length: int  # tokens incl. CLS/EOS for the throughput sweep
    max_tokens: int
    memory_lengths: tuple[int, ...]
    memory_sequences: int


FULL = Settings((500, 1000, 2000, 4000), 130, 16384, (256, 512, 1024, 2048), 32)
QUICK = Settings((8, 16), 130, 1024, (64, 128), 2)


def embed_all(model, sequences: list[str], max_length: int, max_tokens: int, device: torch.device) -> np.ndarray:
    """Tokenize and embed ``sequences`` (mean pooling, teacher width).  # (N, D)"""
    from protkit.sequences.tokenize import encode_one

    tokens = [encode_one(s, max_length) for s in sequences]
    return pooled_embeddings(student_forward(model), tokens, ["mean"], model.config.teacher_dim, max_tokens, device)["mean"]


def _timed_embed(model, sequences: list[str], s: Settings, device: torch.device) -> tuple[np.ndarray, float]:
    """Vectors and seconds of :func:`embed_all`."""
    synchronize(device)
    start = time.perf_counter()
    vectors = embed_all(model, sequences, s.max_length, s.max_tokens, device)
    synchronize(device)
    return vectors, time.perf_counter() - start


def throughput(model, s: Settings, data_dir: Path, device: torch.device, result: Result) -> Table:
    """Residues/s for each sample size (nested prefixes of one seeded sample), each against a run
    of the smallest size timed just before it, so that drift in the machine's speed between sizes
    does not read as a scaling effect."""
    proteins = sample_proteins(max(s.sizes), data_dir)
    sequences = [p.sequence for p in proteins]
    all_tokens = tokenize(proteins, s.max_length)
    smallest = min(s.sizes)
    embed_all(model, sequences[:8], s.max_length, s.max_tokens, device)  # warm-up
    table = Table(
        f"B6a throughput vs number of sequences (truncated at {s.max_length - 2} residues)",
        ["sequences", "distinct proteins", "residues", "seconds", "residues/s",
         f"residues/s vs {smallest:,} sequences timed just before"],
    )
    reference_vectors, ratios = None, []
    for n in s.sizes:
        reference_vectors, reference_seconds = _timed_embed(model, sequences[:smallest], s, device)
        vectors, seconds = _timed_embed(model, sequences[:n], s, device)
        n_res = residues(all_tokens[:n])
        ratios.append(n_res / seconds / (residues(all_tokens[:smallest]) / reference_seconds))
        table.rows.append([f"{n:,}", f"{len({p.id for p in proteins[:n]}):,}", f"{n_res:,}", f"{seconds:.1f}",
                           rate(n_res / seconds), f"{ratios[-1]:.2f}x"])
        agreement = float(cosines(vectors[:smallest], reference_vectors).min())
        result.require(agreement >= SAME_COSINE, f"{n} sequences: the first {smallest} vectors differ from a "
                                                f"{smallest}-sequence run (min cosine {agreement:.7f} < {SAME_COSINE})")
    result.goals.append(Goal(f"flat throughput: slowest of {len(s.sizes)} sizes vs {smallest:,} sequences beside it",
                             FLATNESS, min(ratios)))
    return table


def memory(s: Settings, quick: bool, data_dir: Path, device: torch.device) -> Table:
    """Peak RSS of a fresh subprocess per maximum length."""
    table = Table(
        f"B6b peak resident memory vs maximum sequence length ({s.memory_sequences} proteins truncated to L, "
        f"token budget {s.max_tokens}, fresh process each)",
        ["max length L (tokens)", "batch shape", "RSS with model and data loaded", "peak RSS while embedding", "growth",
         "residues/s"] + (["peak CUDA memory"] if device.type == "cuda" else []),
    )
    for length in s.memory_lengths:
        command = [sys.executable, str(Path(__file__).resolve()), "--probe-memory", str(length),
                   "--data", str(data_dir), "--device", device.type] + (["--quick"] if quick else [])
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"memory probe at L={length} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        table.rows.append([
            str(length), probe["batch_shape"], f"{probe['rss_model_mb']:.0f} MB", f"{probe['rss_peak_mb']:.0f} MB",
            f"+{probe['rss_peak_mb'] - probe['rss_model_mb']:.0f} MB", rate(probe["residues_per_s"]),
        ] + ([f"{probe['cuda_peak_mb']:.0f} MB"] if device.type == "cuda" else []))
    return table


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MB."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} (the memory probe needs Linux)")
    return int(match.group(1)) / 1024


def probe_memory(length: int, quick: bool, data_dir: Path, device: torch.device) -> dict:
    """Run in a fresh process: resident memory (MB) once the model and data are loaded, and the
    peak while embedding (the high-water mark is reset just before, so imports do not count)."""
    s = QUICK if quick else FULL
    model = student_model(quick, device)
    proteins = sample_proteins(s.memory_sequences, data_dir, min_residues=length - 2)
    sequences = [p.sequence for p in proteins]
    embed_all(model, sequences[:1], 16, s.max_tokens, device)  # warm-up (library initialisation)
    rss_model = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    rows = max(1, s.max_tokens // length)
    start = time.perf_counter()
    vectors = embed_all(model, sequences, length, s.max_tokens, device)
    synchronize(device)
    seconds = time.perf_counter() - start
    if not np.isfinite(vectors).all():
        raise RuntimeError(f"non-finite embeddings at max length {length}")
    return {
        "length": length,
        "batch_shape": f"{min(rows, len(sequences))} x {length}",
        "rss_model_mb": rss_model,
        "rss_peak_mb": _status_mb("VmHWM"),
        "residues_per_s": len(sequences) * (length - 2) / seconds,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0,
    }


def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    s = QUICK if quick else FULL
    result = Result(KEY, TITLE, device_name(device))
    model = student_model(quick, device)
    result.tables.append(throughput(model, s, data_dir, device, result))
    result.tables.append(memory(s, quick, data_dir, device))
    result.notes += [
        f"Model: {'tiny test config' if quick else 'ProtHash-V2-384-Tiny'}, seeded random weights, fp32; "
        f"token budget {s.max_tokens} padded tokens per batch.",
        f"Throughput: nested prefixes of one seeded sample of DeepLoc proteins ({len(load_proteins(data_dir)):,} "
        "available; larger sizes repeat proteins, drawn with replacement), truncated at "
        f"{s.max_length - 2} residues to keep `make bench` within its time budget; timed once each, in "
        "increasing size, after a warm-up, each right after a run of the smallest size (the ratio column; the "
        "raw residues/s drift with the machine's load). Vectors of the smallest size must not change in larger runs.",
        f"Memory: proteins of at least L - 2 residues (a seeded sample of {s.memory_sequences}), so every row is "
        "exactly L tokens, in a fresh process per L; peak = VmHWM of /proc/self/status, reset (clear_refs) once "
        "the model and data are loaded. (getrusage's ru_maxrss is not used: a child inherits its parent's peak "
        "across fork and exec, which hid every embedding peak in development.)",
    ]
    return result


def _probe_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="B6 memory probe (one process per length)")
    parser.add_argument("--probe-memory", type=int, required=True, metavar="L")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(json.dumps(probe_memory(args.probe_memory, args.quick, args.data, torch.device(args.device))))
    return 0


if __name__ == "__main__":
    if "--probe-memory" in sys.argv:
        raise SystemExit(_probe_main(sys.argv[1:]))
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
