"""B9 scaling to UniRef50: peak memory of the data stage and of distillation against data size, and
the teacher cache built by 1 vs 2 jobs.

(a) ``filter_split`` (``protkit.data.filter_split``, the rule's entry point) on FASTA files of N
    real proteins (DeepLoc and the pyhmmer proteome) copied with a few seeded substitutions each so
    that they are distinct; goal: the largest input under 1.5 GB of peak RSS.
(b) A short distillation (``protkit.distill.distill_from_cache``, a tiny student, a few steps) from
    synthetic pooled teacher caches (:func:`write_synthetic_cache`, through
    :mod:`benchmarks.synthetic_cache`: the manifest and ``pooled-*.parquet`` shards of
    ``protkit.teacher.build``, random fp16 vectors, and a matching ``sequences.parquet``) of two sizes;
    goal: the larger cache's peak within 1.2x of the smaller's.
(c) The teacher cache of one sequences table built by one job (all cores) and by two jobs
    (``build_cache(..., part=(p, 2))``, one core each, run side by side, then
    ``protkit.teacher.parts.gather_cache_parts``), wall clock of the whole; CPU-bound on a 2-core
    machine, so the ratio measures the overhead of parts and gather, not a speed-up.

Every measured run is a fresh subprocess started by a small launcher process, and its peak is the
launcher's ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: a child inherits the peak RSS of the process it
was forked from (Linux keeps ``maxrss`` across fork and exec), so the benchmark itself, which has
torch loaded, must not be that parent. The child's own ``VmHWM`` is shown beside it as a check.

    .venv/bin/python benchmarks/b9_scaling_memory.py            # full sizes (about 5 minutes on 2 cores)
    .venv/bin/python benchmarks/b9_scaling_memory.py --quick    # smoke run, < 1 minute
    .venv/bin/python benchmarks/run_all.py --only B9 --update docs/benchmarks.md   # into the report

Full sizes: filter_split of 0.1M, 0.5M and 2M sequences (2M: a 0.95 GB FASTA, ~1.5 minutes); caches of
200k and 800k sequences at 960 dims (1.5 GB of shards); the teacher cache of 300 proteins. Scratch files
go to a temporary directory (about 4 GB at the peak) and are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import Result, Table, device_name, load_proteins, log, sample_proteins
from benchmarks.planted import AMINO_ACIDS
from benchmarks.subprocess_peak import STATUS, LimitGoal, finish, launch, mb, measure
from protkit.data.filter import split_of
from protkit.data.table import RowGroupWriter
from protkit.io.paths import resolve_data_path
from protkit.sequences import fasta

KEY, TITLE = "B9", "scaling to UniRef50: peak memory vs data size (filter_split, distillation), teacher cache jobs"
PROTEOME = "pyhmmer:tests/data/seqs/938293.PRJEB85.HG003687.faa"  # as in config/demo.yaml
FILTER_LIMIT_GB = 1.5  # peak RSS of filter_split on the largest input
DISTILL_GROWTH = 1.2  # peak RSS of the larger distillation / the smaller
SUBSTITUTIONS = 3  # per copied protein
DATA = dict(source="fasta", min_length=30, max_length=1022, overlength="truncate", alphabet_policy="reject",
            test_fraction=0.05, split_salt="protkit-split-v1")
RANDOM_TEACHER = {"d_model": 128, "n_heads": 2, "n_layers": 4, "seed": 0, "qk_gain": 4.0}  # config/demo.yaml's


@dataclass(frozen=True)
class Settings:
    filter_sizes: tuple[int, ...]  # sequences in the filter_split inputs
    distill_sizes: tuple[int, int]  # sequences in the synthetic caches
    dim: int  # teacher width of the synthetic caches
    distill_steps: int
    cache_proteins: int  # sequences embedded by the teacher in (c)
    cache_residues: int  # truncated to this many residues


FULL = Settings((100_000, 500_000, 2_000_000), (200_000, 800_000), 960, 5, 300, 510)
QUICK = Settings((2_000, 6_000), (2_000, 6_000), 64, 3, 24, 100)

PROBE_FILTER = STATUS + """
import json, sys, time
from pathlib import Path
from protkit.data import filter_split
imported = status_kb("VmRSS")
start = time.perf_counter()
out = Path(sys.argv[3])
report = filter_split(json.loads(sys.argv[1]), [sys.argv[2]], out / "sequences.parquet", out / "filter_report.json")
print(json.dumps({"seconds": time.perf_counter() - start, "imported_kb": imported, "vmhwm_kb": status_kb("VmHWM"),
                  "input": report["input"], "kept": report["kept"], "duplicates": report["duplicates"]}))
"""
PROBE_DISTILL = STATUS + """
import json, sys, time
from pathlib import Path
import torch
from protkit.distill import distill_from_cache
torch.set_num_threads(int(sys.argv[5]))
imported = status_kb("VmRSS")
start = time.perf_counter()
work = Path(sys.argv[4])
summary = distill_from_cache(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), work / "model", work / "checkpoints",
                             work / "tensorboard", device="cpu", variant_name="b9")
print(json.dumps({"seconds": time.perf_counter() - start, "imported_kb": imported, "vmhwm_kb": status_kb("VmHWM")}))
"""
PROBE_CACHE = STATUS + """
import json, sys, time
import torch
from protkit.teacher import build_cache, teacher_from_config
from protkit.data import read_dataset
threads, part = int(sys.argv[4]), json.loads(sys.argv[5])
torch.set_num_threads(threads)
start = time.perf_counter()
teacher = json.loads(sys.argv[3])
model, sha = teacher_from_config(sys.argv[2], random=teacher, device="cpu", dtype="fp32")
extra = {"part": tuple(part)} if part else {}
build_cache(model, read_dataset(sys.argv[1]), sys.argv[6], weights_sha256=sha, teacher_name="b9", dataset="b9",
            max_length=int(sys.argv[7]), max_tokens_per_batch=8192, poolings=["cls", "mean"], store_dtype="fp16",
            shard_size=128, **extra)
print(json.dumps({"seconds": time.perf_counter() - start, "vmhwm_kb": status_kb("VmHWM")}))
"""
PROBE_GATHER = STATUS + """
import json, sys, time
from protkit.teacher.parts import gather_cache_parts
from protkit.data import read_dataset
start = time.perf_counter()
gather_cache_parts(json.loads(sys.argv[2]), sys.argv[3], read_dataset(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - start, "vmhwm_kb": status_kb("VmHWM")}))
"""


def per_sequence(peaks: dict[int, float], n: int, peak_mb: float) -> str:
    """Bytes of peak RSS per sequence added since the largest size in ``peaks`` ("-" for the first)."""
    if not peaks:
        return "-"
    previous = max(peaks)
    return f"{(peak_mb - peaks[previous]) * 1e6 / (n - previous):,.0f} B"


# --- (a) filter_split ----------------------------------------------------------------------------
def real_proteins(data_dir: Path) -> list[str]:
    """DeepLoc's proteins and the pyhmmer proteome's (stops removed), the seeds of every copy."""
    proteome = [r.sequence.upper().rstrip("*") for r in fasta.read_fasta(resolve_data_path(PROTEOME))]
    return [p.sequence for p in load_proteins(data_dir)] + proteome


def mutated_copies(sources: Sequence[str], n: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``n`` records ``(id, sequence)``: copy ``i`` is source ``i % len(sources)`` with
    ``SUBSTITUTIONS`` seeded substitutions (to another amino acid), so copies are (almost surely)
    distinct; seeded and nested (a smaller ``n`` gives a prefix)."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)
    block = 65_536
    for start in range(0, n, block):
        count = min(block, n - start)
        draws = rng.random((block, SUBSTITUTIONS))  # whole blocks: the draws do not depend on n
        shifts = rng.integers(1, len(letters), (block, SUBSTITUTIONS))
        for j in range(count):
            i = start + j
            seq = bytearray(sources[i % len(sources)].encode())
            for position, shift in zip((draws[j] * len(seq)).astype(int), shifts[j]):
                old = AMINO_ACIDS.find(chr(seq[position]))
                seq[position] = letters[(max(old, 0) + shift) % len(letters)]
            yield f"copy{i}", seq.decode()


def write_copies(sources: Sequence[str], sizes: Sequence[int], directory: Path) -> dict[int, Path]:
    """One FASTA per size (60 residues a line), written in one pass: the smaller are prefixes."""
    paths = {n: directory / f"copies-{n}.fasta" for n in sizes}
    handles = {n: open(path, "w") for n, path in paths.items()}
    try:
        for i, (rid, seq) in enumerate(mutated_copies(sources, max(sizes))):
            text = f">{rid}\n" + "\n".join(seq[k:k + 60] for k in range(0, len(seq), 60)) + "\n"
            for n, handle in handles.items():
                if i < n:
                    handle.write(text)
    finally:
        for handle in handles.values():
            handle.close()
    return paths


def filter_memory(s: Settings, data_dir: Path, work: Path, result: Result) -> Table:
    sources = real_proteins(data_dir)
    start = time.perf_counter()
    paths = write_copies(sources, s.filter_sizes, work)
    log.info("B9a: wrote %d FASTA files in %.0f s", len(paths), time.perf_counter() - start)
    table = Table("B9a filter_split: peak resident memory vs number of sequences (fresh process each)",
                  ["sequences", "FASTA", "kept", "seconds", "RSS after imports", "peak RSS (ru_maxrss)",
                   "peak RSS (child VmHWM)", "peak growth per sequence added (vs the row above)"])
    peaks: dict[int, float] = {}
    for n, path in paths.items():
        out = work / f"filtered-{n}"
        peak = measure(PROBE_FILTER, [json.dumps(DATA), path, out], f"filter_split of {n:,} sequences")
        probe = peak.probe
        result.require(probe["input"] == n, f"filter_split read {probe['input']} records of {n}")
        imported = probe["imported_kb"] * 1024 / 1e6
        slope = per_sequence(peaks, n, peak.ru_maxrss_mb)
        peaks[n] = peak.ru_maxrss_mb
        table.rows.append([f"{n:,}", f"{path.stat().st_size / 1e6:,.0f} MB", f"{probe['kept']:,}",
                           f"{probe['seconds']:.0f}", mb(imported), mb(peak.ru_maxrss_mb), mb(peak.vmhwm_mb), slope])
        path.unlink()
    largest = max(s.filter_sizes)
    result.goals.append(LimitGoal(f"filter_split peak RSS, {largest:,} sequences", FILTER_LIMIT_GB * 1000,
                                  peaks[largest]))
    result.notes.append(
        f"B9a input: {len(sources):,} real proteins (DeepLoc test and hard sets, and the pyhmmer proteome of "
        f"config/demo.yaml), copied in turn with {SUBSTITUTIONS} seeded substitutions each (ids copy0, copy1, ...), "
        "as plain FASTA, 60 residues a line; data settings " + ", ".join(f"{k} {v}" for k, v in DATA.items()) +
        ". Growth per sequence added: the digests of ids and sequences held for the duplicate checks and the "
        "FASTA reader's ids of the file it reads (a row group of output and the libraries are the fixed part). "
        "Copies of proteins longer than 1,022 residues whose substitutions all fall beyond the cut "
        "are exact duplicates after truncation, so the aliases pass runs too (the difference between "
        "sequences and kept).")
    return table


# --- (b) distillation from synthetic caches ------------------------------------------------------
def write_synthetic_cache(
    sequences: Sequence[str], n: int, dim: int, cache_dir: Path, sequences_parquet: Path,
    max_length: int, shard_size: int = 16_384, test_fraction: float = 0.001, seed: int = 0,
) -> dict:
    """A complete pooled teacher cache of ``n`` rows (``mean`` pooling, fp16 random vectors of
    ``dim``) and the matching sequences table, written by :mod:`benchmarks.synthetic_cache` (the
    cache format of ``protkit.teacher.build``) shard by shard. Sequence ``i`` is real:
    ``sequences[i % len(sequences)]`` truncated to ``max_length - 2`` residues, id ``s{i}``."""
    from benchmarks.synthetic_cache import write_cache, write_sequences

    rng = np.random.default_rng(seed)
    ids = [f"s{i}" for i in range(n)]
    seqs = [sequences[i % len(sequences)][:max_length - 2] for i in range(n)]
    splits = ["test" if (i * 2654435761) % 2**32 < test_fraction * 2**32 else "train" for i in range(n)]

    def shards() -> Iterator[tuple[list[str], list[str], list[str], dict[str, np.ndarray]]]:
        for start in range(0, n, shard_size):
            rows = slice(start, min(n, start + shard_size))
            vectors = rng.standard_normal((len(ids[rows]), dim), dtype=np.float32).astype(np.float16)  # (n, D)
            yield ids[rows], seqs[rows], splits[rows], {"mean": vectors}

    write_sequences(sequences_parquet, ids, seqs, splits)
    return write_cache(cache_dir, shards(), dim=dim, max_length=max_length, poolings=("mean",), dataset="b9")


def student_variant(steps: int, max_length: int) -> dict:
    """A tiny student trained for ``steps`` steps on the ``mean`` targets."""
    return {
        "architecture": {"d_model": 32, "q_heads": 4, "kv_heads": 2, "n_layers": 2, "hidden_ratio": 2,
                         "context_length": max_length, "positions": "rotary"},
        "training": {"objective": "pooled", "poolings": ["mean"], "adapter_init": "random", "max_steps": steps,
                     "warmup_steps": 1, "batch_tokens": 2048, "eval_every": steps, "checkpoint_every": 0, "seed": 0},
        "qat": {"enabled": False},
    }


def distill_memory(s: Settings, data_dir: Path, work: Path, result: Result) -> Table:
    max_length = 130  # tokens: 128 residues
    sequences = [p.sequence for p in load_proteins(data_dir)]
    table = Table(f"B9b distillation from a synthetic pooled cache ({s.dim} dims, fp16, mean): peak resident memory "
                  "vs cache size (fresh process each)",
                  ["sequences", "cache shards on disk", "seconds", "RSS after imports", "peak RSS (ru_maxrss)",
                   "peak RSS (child VmHWM)", "peak growth per sequence added (vs the row above)"])
    peaks: dict[int, float] = {}
    for n in s.distill_sizes:
        cache, parquet = work / f"cache-{n}", work / f"sequences-{n}.parquet"
        start = time.perf_counter()
        manifest = write_synthetic_cache(sequences, n, s.dim, cache, parquet, max_length)
        log.info("B9b: wrote a synthetic cache of %d sequences in %.0f s", n, time.perf_counter() - start)
        size = sum((cache / name).stat().st_size for name in manifest["shards"])
        peak = measure(PROBE_DISTILL, [parquet, cache, json.dumps(student_variant(s.distill_steps, max_length)),
                                       work / f"distill-{n}", torch.get_num_threads()],
                       f"distillation from {n:,} cached sequences")
        slope = per_sequence(peaks, n, peak.ru_maxrss_mb)
        peaks[n] = peak.ru_maxrss_mb
        table.rows.append([f"{n:,}", mb(size / 1e6), f"{peak.probe['seconds']:.0f}",
                           mb(peak.probe["imported_kb"] * 1024 / 1e6), mb(peak.ru_maxrss_mb), mb(peak.vmhwm_mb), slope])
        shutil.rmtree(cache)
        parquet.unlink()
    small, large = s.distill_sizes
    result.goals.append(LimitGoal(f"distillation peak RSS, {large:,} vs {small:,} cached sequences", DISTILL_GROWTH,
                                  peaks[large] / peaks[small], unit="x"))
    result.notes.append(
        f"B9b: `protkit.distill.distill_from_cache` in a subprocess: a tiny student (d_model 32, 2 layers), "
        f"{s.distill_steps} steps of 2,048 tokens, adapter_init random (the ridge fit, which embeds the whole train "
        "split, is left out to keep the run short), a 0.1% test split (evaluated at the first and last step); "
        "sequences are DeepLoc proteins in turn, "
        f"truncated to {max_length - 2} residues, ids s0, s1, ...; the cache's vectors are seeded random fp16. "
        "Peak includes building the distillation's target store from the cache.")
    return table


# --- (c) teacher cache with 1 vs 2 jobs ----------------------------------------------------------
def cache_jobs(s: Settings, data_dir: Path, work: Path, result: Result) -> Table:
    table = Table(f"B9c teacher cache of DeepLoc proteins (demo random ESMC, d_model "
                  f"{RANDOM_TEACHER['d_model']}, {RANDOM_TEACHER['n_layers']} layers, cls + mean, fp16): 1 vs 2 jobs "
                  f"on {os.cpu_count()} cores", ["build", "jobs x torch threads", "wall s", "peak RSS per job",
                                                "wall vs 1 job"])
    from protkit.teacher.layout import part_dir
    from protkit.teacher.loading import write_random_teacher
    from protkit.teacher.read import load_pooled

    weights = write_random_teacher(RANDOM_TEACHER, work / "teacher.safetensors")
    proteins = {p.id: p.sequence[:s.cache_residues] for p in sample_proteins(s.cache_proteins, data_dir)}
    sequences = work / "teacher-sequences.parquet"
    writer = RowGroupWriter(sequences)
    for rid, seq in proteins.items():
        writer.append(rid, seq, split_of(seq, "b9", 0.1))
    writer.close()
    n_proteins = len(proteins)
    max_length = s.cache_residues + 2
    cores = os.cpu_count() or 1

    def args(threads: int, part: list[int] | None, out: Path) -> list:
        return [sequences, weights, json.dumps(RANDOM_TEACHER), threads, json.dumps(part), out, max_length]

    single = measure(PROBE_CACHE, args(cores, None, work / "one-job"), "teacher cache, 1 job")
    start = time.perf_counter()
    scattered = work / "two-jobs"
    running = [launch(PROBE_CACHE, args(max(1, cores // 2), [p, 2], part_dir(scattered, (p, 2)))) for p in range(2)]
    parts = [finish(process, f"teacher cache part {p} of 2", start) for p, process in enumerate(running)]
    parts_wall = time.perf_counter() - start
    gather = measure(PROBE_GATHER, [sequences, json.dumps([str(part_dir(scattered, (p, 2))) for p in range(2)]),
                                    scattered], "gather_cache_parts")
    total = parts_wall + gather.wall
    one, two = load_pooled(work / "one-job"), load_pooled(scattered)
    result.require(one.ids == two.ids, "the gathered cache's rows differ from the single job's")
    worst = max(float(np.abs(one.vectors[p] - two.vectors[p]).max()) for p in one.vectors)
    result.require(worst < 1e-2, f"gathered vectors differ from the single job's by up to {worst:.3g}")
    table.rows += [
        ["one job", f"1 x {cores}", f"{single.wall:.1f}", mb(single.ru_maxrss_mb), "1.00x"],
        ["two parts, side by side", f"2 x {max(1, cores // 2)}", f"{parts_wall:.1f}",
         mb(max(p.ru_maxrss_mb for p in parts)), "-"],
        ["gather", "1 x 1", f"{gather.wall:.1f}", mb(gather.ru_maxrss_mb), "-"],
        ["two jobs in all (parts + gather)", "-", f"{total:.1f}", "-", f"{total / single.wall:.2f}x"],
    ]
    result.notes.append(
        f"B9c: each build is a fresh process (start-up and loading the teacher included), {n_proteins} DeepLoc "
        f"proteins (the distinct ones of a seeded sample of {s.cache_proteins}) truncated at {s.cache_residues} "
        "residues, shards of 128. The teacher's forward pass is CPU-bound: on an idle machine of "
        f"{cores} cores, two jobs of {max(1, cores // 2)} thread(s) do the same work as one job of {cores}, so the "
        "ratio shows the overhead of splitting and gathering (process start-up twice, the gather pass), not a "
        "speed-up. A ratio below 1 means the single multi-threaded job ran below its full speed (torch threads "
        "waiting for each other when other processes compete for the cores: see the load average), not that parts "
        "are faster. On a cluster each part is a GPU job of its own, and the wall time of the parts falls with their "
        "number. Largest difference between the gathered and the single-job "
        f"vectors: {worst:.2g} (fp16 storage; thread counts change summation order).")
    return table


# --- the benchmark ----------------------------------------------------------------------------
def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    if device.type != "cpu":
        return Result(KEY, TITLE, device_name(device), status="skipped",
                      message="CPU only: the data stage and the memory of distillation's data path are host-side")
    s = QUICK if quick else FULL
    result = Result(KEY, TITLE, device_name(device))
    load_proteins(data_dir)  # DataMissing (a skip) before any work
    with tempfile.TemporaryDirectory(prefix="protkit-b9-") as tmp:
        work = Path(tmp)
        result.tables.append(filter_memory(s, data_dir, work, result))
        result.tables.append(distill_memory(s, data_dir, work, result))
        result.tables.append(cache_jobs(s, data_dir, work, result))
    result.notes.append(
        "Peak RSS: ru_maxrss of the measured process as reported to its launcher (a small Python process that "
        "only starts it), in MB of 10^6 bytes; 'RSS after imports' is the process's own VmRSS once protkit "
        "(and torch, for B9b) is imported. Full-size run: `.venv/bin/python benchmarks/b9_scaling_memory.py` "
        f"(sizes: filter_split {', '.join(f'{n:,}' for n in FULL.filter_sizes)} sequences; caches "
        f"{' and '.join(f'{n:,}' for n in FULL.distill_sizes)} sequences at {FULL.dim} dims; teacher cache "
        f"{FULL.cache_proteins} proteins).")
    return result


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
