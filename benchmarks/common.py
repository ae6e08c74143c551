"""Shared harness of the benchmarks: the real-protein sample, interleaved timing, FLOP counts,
correctness checks, machine description and Markdown results.

Every benchmark module exposes ``KEY``, ``TITLE`` and ``run(device, quick, data_dir) -> Result``.
Timings are ratios of variants measured side by side in one process: the work is split into rounds
(strided subsets of the sequences, so every round has the same length mix), each variant runs once
per round in a rotating order (A B C, B C A, C A B, ...) after an untimed warm-up, and a speed-up
is the median over rounds of the per-round time ratio. Absolute numbers on shared machines are
noise. A correctness check that fails (parity, cosine) marks the result failed: the tables are
kept, and ``run_all.py`` exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from protkit.embed.embedder import BatchRunner, embed_token_lists, pooled_embeddings
from protkit.models.cpu import this_cpu
from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.fasta import read_fasta
from protkit.sequences.tokenize import encode_one

log = logging.getLogger("benchmarks")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
FASTA_FILES = ("deeploc_test.fasta", "deeploc_hard.fasta")
MAX_LENGTH = 1024  # tokens incl. CLS/EOS: 1022 residues
SEED = 0

Runner = Callable[[Sequence[int]], Any]  # runs a variant on the given item indices, returns its output


class Unavailable(RuntimeError):
    """What the benchmark needs is absent (data, a GPU): it is skipped, not failed."""


class DataMissing(Unavailable):
    """The real protein data is absent."""


# --- data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protein:
    id: str
    sequence: str  # upper-case, terminal '*' removed, not truncated


@lru_cache(maxsize=4)
def load_proteins(data_dir: Path = DATA_DIR) -> tuple[Protein, ...]:
    """Every record of the DeepLoc FASTA files in ``data_dir``, in file order."""
    paths = [Path(data_dir) / name for name in FASTA_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataMissing(
            f"real protein data absent ({', '.join(missing)}); the benchmarks need "
            f"{' and '.join(FASTA_FILES)} in {data_dir} (pass --data DIR to use another directory)"
        )
    return tuple(
        Protein(record.id, record.sequence.upper().removesuffix("*"))
        for path in paths
        for record in read_fasta(path)
    )


def sample_proteins(
    n: int,
    data_dir: Path = DATA_DIR,
    seed: int = SEED,
    max_residues: int | None = None,
    min_residues: int | None = None,
) -> list[Protein]:
    """A fixed, seeded sample of ``n`` proteins, in random order.

    Only proteins of ``min_residues..max_residues`` residues are eligible (``None``: no bound).
    Without replacement while ``n`` fits; when ``n`` exceeds the eligible proteins, they all come
    first (shuffled) and the rest are drawn with replacement, so a smaller ``n`` is always a
    prefix of a larger one with the same seed.
    """
    pool = [
        p for p in load_proteins(Path(data_dir))
        if (max_residues is None or len(p.sequence) <= max_residues)
        and (min_residues is None or len(p.sequence) >= min_residues)
    ]
    if not pool:
        raise DataMissing(f"no protein of {min_residues}..{max_residues} residues in {data_dir}")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(pool)))
    if n > len(order):
        order += list(rng.integers(0, len(pool), n - len(order)))
    return [pool[i] for i in order[:n]]


def tokenize(proteins: Sequence[Protein], max_length: int = MAX_LENGTH) -> list[list[int]]:
    """Token ids (CLS + residues + EOS), truncated to ``max_length`` tokens."""
    return [encode_one(p.sequence, max_length) for p in proteins]


def residues(token_lists: Sequence[Sequence[int]], items: Sequence[int] | None = None) -> int:
    """Residues (tokens minus CLS and EOS) of ``items`` (default: all)."""
    rows = range(len(token_lists)) if items is None else items
    return sum(len(token_lists[i]) - 2 for i in rows)


def length_summary(token_lists: Sequence[Sequence[int]]) -> str:
    """``n sequences, residues min/median/max, total``."""
    lengths = np.array([len(t) - 2 for t in token_lists])
    return (
        f"{len(lengths)} sequences, {int(lengths.min())}/{int(np.median(lengths))}/{int(lengths.max())} "
        f"residues (min/median/max), {int(lengths.sum()):,} in all"
    )


def sample_note(max_residues: int | None) -> str:
    """How a sample was drawn, for the notes under a table."""
    if max_residues is None:
        return "a seeded sample of DeepLoc proteins, lengths as they come, truncated at 1022 residues"
    return f"a seeded sample of DeepLoc proteins of at most {max_residues} residues"


def strided_rounds(n_items: int, n_rounds: int) -> list[list[int]]:
    """``n_rounds`` disjoint subsets ``i::n_rounds`` of ``range(n_items)`` (same length mix each)."""
    n_rounds = max(1, min(n_rounds, n_items))
    return [list(range(r, n_items, n_rounds)) for r in range(n_rounds)]


# --- models --------------------------------------------------------------------------------
QUICK_STUDENT = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64, context_length=1024)
STUDENT = "ProtHash-V2-384-Tiny"


def student_model(quick: bool, device: torch.device, seed: int = 0) -> ProtHash:
    """The benchmarked student (``QUICK_STUDENT`` with ``quick``) with seeded random weights, eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProtHash(QUICK_STUDENT if quick else PRESETS[STUDENT]).to(device).eval()


def embedder(forward: Callable, tokens: list[list[int]], dim: int, max_tokens: int, device: torch.device) -> Runner:
    """A runner: ``{item: mean-pooled vector (dim,)}`` of ``items``, through protkit's embedding loop
    (``protkit.embed.embedder.pooled_embeddings``: length-sorted token-budget batches, inference mode)."""
    def run(items: Sequence[int]) -> dict[int, np.ndarray]:
        items = list(items)
        vectors = pooled_embeddings(forward, [tokens[i] for i in items], ["mean"], dim, max_tokens, device)["mean"]
        return dict(zip(items, vectors))
    return run


def batch_runner(runner: BatchRunner, tokens: list[list[int]], dim: int, max_tokens: int, device: torch.device) -> Runner:
    """Like :func:`embedder`, over any backend's batch runner (``Embedder.runner``)."""
    def run(items: Sequence[int]) -> dict[int, np.ndarray]:
        items = list(items)
        pooled, _ = embed_token_lists(runner, [tokens[i] for i in items], ["mean"], dim, max_tokens, device)
        return dict(zip(items, pooled["mean"]))
    return run


@contextmanager
def scratch_cache(directory: Path) -> Iterator[Path]:
    """protkit's cache (ONNX exports) in ``directory`` for the duration: exports are timed, and the
    user's ~/.cache is left alone."""
    previous = os.environ.get("PROTKIT_CACHE_DIR")
    os.environ["PROTKIT_CACHE_DIR"] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop("PROTKIT_CACHE_DIR", None)
        else:
            os.environ["PROTKIT_CACHE_DIR"] = previous


def saved_student(model: ProtHash, directory: Path) -> Path:
    """``model`` saved as a protkit student directory (what ``protkit embed --model`` takes)."""
    model.save_pretrained(directory)
    return directory


# --- timing ----------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    """Seconds and outputs of each variant, one entry per round."""

    seconds: dict[str, list[float]]
    outputs: dict[str, list[Any]]

    def total(self, name: str) -> float:
        return sum(self.seconds[name])

    def speedups(self, fast: str, slow: str) -> list[float]:
        """Per-round ``time(slow) / time(fast)``."""
        return [s / f for f, s in zip(self.seconds[fast], self.seconds[slow])]

    def speedup(self, fast: str, slow: str) -> float:
        """Median over rounds of :meth:`speedups`."""
        return statistics.median(self.speedups(fast, slow))

    def stacked(self, name: str, n_items: int) -> np.ndarray:
        """A runner variant's vectors (rounds of ``{item: vector}``) in item order.  # (n_items, D)"""
        by_item = {i: v for out in self.outputs[name] for i, v in out.items()}
        return np.stack([by_item[i] for i in range(n_items)])


def interleaved(
    variants: dict[str, Runner],
    rounds: Sequence[Sequence[int]],
    warmup: Sequence[Sequence[int]],
    device: torch.device,
    repeats: dict[str, int] | None = None,
) -> Timings:
    """Run every variant on each item list of ``warmup`` (untimed), then on each round's items in
    a rotating order. ``repeats[name]`` > 1 runs that variant several times per round (for
    variants much faster than the others) and keeps the median time."""
    names = list(variants)
    repeats = repeats or {}
    for name in names:
        for items in warmup:
            variants[name](items)
    synchronize(device)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[Any]] = {name: [] for name in names}
    for index, items in enumerate(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            times = []
            for _ in range(repeats.get(name, 1)):
                start = time.perf_counter()
                output = variants[name](items)
                synchronize(device)
                times.append(time.perf_counter() - start)
            seconds[name].append(statistics.median(times))
            outputs[name].append(output)
        log.info("round %d/%d: %s", index + 1, len(rounds),
                 ", ".join(f"{n} {seconds[n][-1]:.2f}s" for n in names))
    return Timings(seconds, outputs)


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate (FLOP/s): best of ``repeats`` ``n x n @ n x n`` products."""
    generator = torch.Generator().manual_seed(SEED)
    a = torch.randn(n, n, generator=generator).to(device)
    b = torch.randn(n, n, generator=generator).to(device)
    with torch.inference_mode():
        a @ b
        synchronize(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# --- FLOPs -----------------------------------------------------------------------------------
def nonembedding_params(model: torch.nn.Module) -> int:
    """Parameters outside embedding tables (each used in one multiply-add per token)."""
    embedding = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def forward_flops(params: int, n_layers: int, width: int, lengths: Sequence[int]) -> float:
    """Useful FLOPs of forwards over sequences of ``lengths`` real tokens (no padding):
    ``2 * params * L`` for the matmuls plus ``4 * L^2 * width`` per layer for attention."""
    return float(sum(2 * params * n + 4 * n * n * width * n_layers for n in lengths))


# --- correctness -----------------------------------------------------------------------------
def max_relative_l2(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest ``|got - expected| / |expected|`` over positions.  got, expected: (L, D)"""
    got, expected = got.double(), expected.double()
    return float(((got - expected).norm(dim=-1) / expected.norm(dim=-1).clamp_min(1e-12)).max())


def cosines(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Row-wise cosine similarity of two ``(N, D)`` arrays.  # (N,)"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)


# --- results ---------------------------------------------------------------------------------
@dataclass
class Goal:
    """A speed-up goal: ``measured >= target`` and, if given, a side condition (parity, cosine)."""

    name: str
    target: float
    measured: float | None
    condition: str = ""
    condition_met: bool = True
    unit: str = "x"  # "x": a speed-up; "": a plain value (a cosine); else a rate's unit ("residues/s")

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured >= self.target and self.condition_met

    def row(self) -> list[str]:
        measured = "n/a" if self.measured is None else self.value(self.measured)
        unmet = self.condition and not self.condition_met and self.measured is not None
        condition = self.condition + (" (not met)" if unmet else "")
        target = f"{self.target:g}x" if self.unit == "x" else self.value(self.target)
        return [self.name, f">= {target}", measured, condition or "-", "PASS" if self.passed else "MISS"]

    def value(self, number: float) -> str:
        """``number`` in the goal's unit."""
        if self.unit == "x":
            return ratio(number)
        return f"{number:.6g}" if not self.unit else f"{rate(number)} {self.unit}"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join(" --- " for _ in self.header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Result:
    key: str  # "B1"
    title: str
    device: str = "cpu"
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | skipped | failed
    message: str = ""
    seconds: float = 0.0
    machine: str = ""  # set by execute()
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after, set by execute()
    figures: dict[str, float] = field(default_factory=dict)  # named numbers other documents take (docs/scaling.md)

    def to_dict(self) -> dict:
        """Plain JSON-able form (what the GPU run writes, and merges back with :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        fields = {**data, "tables": [Table(**t) for t in data["tables"]], "goals": [Goal(**g) for g in data["goals"]],
                  "load": tuple(data["load"])}
        return cls(**fields)

    def require(self, ok: bool, message: str) -> None:
        """Record a failed correctness check: the tables are kept, the benchmark fails."""
        if not ok:
            log.error("%s correctness check failed: %s", self.key, message)
            self.status = "failed"
            self.message = "; ".join(filter(None, [self.message, f"correctness check failed: {message}"]))

    def markdown(self, command: str, date: str) -> str:
        lines = [f"## {self.key} {self.title} ({self.device})", "",
                 f"{self.machine}; `{command}`; {date}; took {self.seconds:.0f} s; "
                 f"load average {self.load[0]:.1f} before, {self.load[1]:.1f} after.", ""]
        if self.status == "skipped":
            return "\n".join(lines + [f"SKIPPED: {self.message}", ""])
        if self.status == "failed":
            lines += [f"FAILED: {self.message}", ""]
        for table in self.tables:
            lines += [table.markdown(), ""]
        if self.goals:
            goals = Table("Goals", ["goal", "target", "measured", "condition", "result"], [g.row() for g in self.goals])
            lines += [goals.markdown(), ""]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def rate(value: float) -> str:
    """Residues (or tokens) per second, 3 significant digits."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def spread(values: Sequence[float]) -> str:
    """``median [min-max]`` of per-round speed-ups."""
    return f"{ratio(statistics.median(values))} [{min(values):.2f}-{max(values):.2f}]"


# --- machine ---------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model and capability class (bf16 units, int8 dot products), as protkit --version shows it."""
    return this_cpu().describe()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def machine_line(device: torch.device) -> str:
    """CPU model, cores, torch version and device, for the header of every table."""
    import torchao

    return (
        f"{cpu_model()}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
        f"torch {torch.__version__}, torchao {torchao.__version__}, Python {platform.python_version()}, "
        f"device {device_name(device)}"
    )


def shell_command(argv: Sequence[str]) -> str:
    """The command line that ran ``argv`` (interpreter relative to the working directory)."""
    python = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") else sys.executable
    return " ".join(shlex.quote(a) for a in [python, *argv])


def today() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def devices() -> list[torch.device]:
    """CPU always; CUDA too when a GPU is present."""
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


# --- entry point for one benchmark -----------------------------------------------------------
def execute(module: ModuleType, device: torch.device, quick: bool, data_dir: Path) -> Result:
    """``module.run`` with its wall time: data absence -> ``skipped``; a failed correctness check or
    any other error -> ``failed`` (with the message; the traceback is logged)."""
    start, load = time.perf_counter(), os.getloadavg()[0]
    try:
        result = module.run(device, quick, data_dir)
    except Unavailable as err:
        result = Result(module.KEY, module.TITLE, device_name(device), status="skipped", message=str(err))
    except Exception as err:  # reported in the document and the exit status, never hidden
        log.exception("%s failed on %s", module.KEY, device)
        result = Result(module.KEY, module.TITLE, device_name(device), status="failed",
                        message=f"{type(err).__name__}: {err}")
    result.seconds = time.perf_counter() - start
    result.machine = machine_line(device)
    result.load = (load, os.getloadavg()[0])
    return result


def main(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/bN_*.py [--quick] [--data DIR]``: run one benchmark on every device and
    print its tables; exit status 1 when it failed."""
    parser = argparse.ArgumentParser(description=f"{module.KEY}: {module.TITLE}")
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes (smoke run)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"directory of {' and '.join(FASTA_FILES)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = shell_command(sys.argv)
    failed = False
    for device in devices():
        result = execute(module, device, args.quick, args.data)
        print(result.markdown(command, today()))
        failed |= result.status == "failed"
    return int(failed)
