"""B8 search and near-duplicates: protkit's embedding search against MMseqs2 and CD-HIT.

One FASTA, given to every tool: a seeded sample of real DeepLoc proteins (50-1022 residues) plus
planted copies of distinct sample proteins mutated to 98, 95, 90 and 80% identity
(:mod:`benchmarks.planted`). Each tool runs as a subprocess, the command a user types, timed by
wall clock and reported as seconds per 1,000 proteins of the input:

- protkit, student fp32 and int8: ``protkit embed``, ``protkit index``, ``protkit search --k 10``
  (all against all) and ``protkit dedup --threshold T``, each step timed;
- MMseqs2: ``mmseqs easy-search`` (all against all), ``mmseqs easy-linclust`` (defaults, and
  ``--min-seq-id 0.9``) and ``mmseqs easy-cluster --min-seq-id 0.9`` (the sensitive cascade);
  CD-HIT: ``cd-hit -c 0.9``.

Per tool and identity level: recall of planted pairs (the source among the copy's hits, at rank 1
and within 10; or copy and source in one cluster), and the pairs reported between proteins that
are not a planted pair. The student has seeded random weights unless ``PROTKIT_B8_MODEL`` names a
student directory. MMseqs2 and CD-HIT come from Debian (``apt-get install mmseqs2 cd-hit``, as
root); when they cannot be had, their rows say SKIPPED with the reason.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq
import torch

from benchmarks.common import (
    Goal, Result, Table, device_name, log, sample_proteins, saved_student, scratch_cache, student_model,
)
from benchmarks.planted import LEVELS, Planted, plant_copies, write_fasta

KEY, TITLE = "B8", "Search and near-duplicates: protkit vs MMseqs2 and CD-HIT on planted copies"
MODEL_VARIABLE = "PROTKIT_B8_MODEL"  # a student directory to use instead of the random one
THRESHOLD = 0.99  # cosine: protkit dedup --threshold and search --min-score
K = 10
GOAL_RECALL = 0.95  # protkit search: the source at rank 1 for 98%-identity copies
GOAL_SPEEDUP = 1.0  # protkit embed + index + search vs mmseqs easy-search, per 1,000 proteins
TOOL_SECONDS = 1200  # a tool that takes longer has hung
APT_PACKAGES = {"mmseqs": "mmseqs2", "cd-hit": "cd-hit"}


@dataclass(frozen=True)
class Settings:
    n_proteins: int  # real proteins
    per_level: int  # planted copies per identity level
    min_residues: int
    max_residues: int
    int8: bool  # also run protkit with the int8 student


FULL = Settings(1000, 100, 50, 1022, int8=True)
QUICK = Settings(60, 5, 50, 300, int8=False)  # about 25 s, most of it process start-up


# --- the input -------------------------------------------------------------------------------
@dataclass
class Benchmark:
    """The FASTA every tool gets, and the planted pairs to find in it."""

    fasta: Path
    records: list[tuple[str, str]]
    copies: list[Planted]

    @property
    def n(self) -> int:
        return len(self.records)

    def per_thousand(self, seconds: float) -> float:
        return 1000 * seconds / self.n


def build_input(s: Settings, data_dir: Path, fasta: Path) -> Benchmark:
    proteins = sample_proteins(s.n_proteins, data_dir, min_residues=s.min_residues, max_residues=s.max_residues)
    real = list({p.id: p.sequence for p in proteins}.items())  # the two DeepLoc files share a few ids
    copies = plant_copies(real, LEVELS, s.per_level)
    records = real + [(c.id, c.sequence) for c in copies]
    write_fasta(records, fasta)
    return Benchmark(fasta, records, copies)


# --- what a tool reports, and its scores ---------------------------------------------------------
@dataclass
class Report:
    """One tool's answer: ranked hits per query (search) or a group per protein (clustering)."""

    hits: dict[str, list[str]] | None = None  # query -> hit ids, best first, self left out
    groups: dict[str, str] | None = None  # protein -> cluster label

    def pairs(self) -> set[frozenset[str]]:
        """Every pair of distinct proteins the tool reports as related."""
        if self.hits is not None:
            return {frozenset((q, h)) for q, hits in self.hits.items() for h in hits if h != q}
        members = defaultdict(list)
        for protein, label in self.groups.items():
            members[label].append(protein)
        return {frozenset(p) for group in members.values() for p in itertools.combinations(group, 2)}


@dataclass
class Scores:
    recall: dict[float, tuple[float, ...]]  # level -> (rank 1, top 10) for search, (same cluster,) for clusters
    other_pairs: int
    detail: str = ""  # e.g. the number of clusters


def score(report: Report, copies: Sequence[Planted]) -> Scores:
    planted = {frozenset((c.id, c.source_id)) for c in copies}
    recall = {}
    for level in sorted({c.level for c in copies}, reverse=True):
        chosen = [c for c in copies if c.level == level]
        if report.hits is not None:
            ranks = [rank_of(c.source_id, report.hits.get(c.id, [])) for c in chosen]
            recall[level] = (share(r == 1 for r in ranks), share(r is not None and r <= K for r in ranks))
        else:
            recall[level] = (share(c.id in report.groups and report.groups.get(c.id) == report.groups.get(c.source_id)
                                   for c in chosen),)
    detail = "" if report.groups is None else f"{len(set(report.groups.values())):,} clusters"
    return Scores(recall, len(report.pairs() - planted), detail)


def rank_of(source: str, hits: list[str]) -> int | None:
    """1-based rank of ``source`` among ``hits``, or None."""
    return hits.index(source) + 1 if source in hits else None


def share(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else float("nan")


# --- running tools -------------------------------------------------------------------------------
@dataclass
class Run:
    """A tool's timed steps (seconds, in order) and its report, or why it has none."""

    name: str
    kind: str  # "protkit" (search and dedup), "search" or "cluster"
    steps: dict[str, float] = field(default_factory=dict)
    start_up: float = 0.0  # seconds of ``protkit --help``: the start-up inside every step
    reports: dict[str, Report] = field(default_factory=dict)  # "search", "dedup", ...
    skipped: str = ""
    failed: str = ""


def timed(argv: Sequence[str], cwd: Path) -> float:
    """Wall seconds of ``argv`` run to completion; RuntimeError with its stderr when it fails."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=TOOL_SECONDS)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, argv))}` exited with {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
    return seconds


def protkit_command() -> list[str]:
    """The ``protkit`` entry point beside this interpreter, else ``python -m protkit.cli``."""
    script = Path(sys.executable).with_name("protkit")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "protkit.cli"]


APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


@cache
def apt_update() -> None:
    """``apt-get update``, once per process."""
    subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, env=APT_ENV)


def tool_problem(binary: str) -> str | None:
    """Why ``binary`` cannot run, or None; installs its Debian package when root and apt allow."""
    if shutil.which(binary):
        return None
    package = APT_PACKAGES[binary]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{binary} not on PATH, and installing Debian's {package} needs root and apt-get"
    apt_update()
    log.info("installing %s with apt-get for B8", package)
    done = subprocess.run(["apt-get", "install", "-y", package], capture_output=True, text=True, timeout=600, env=APT_ENV)
    if done.returncode != 0 or not shutil.which(binary):
        return f"apt-get install -y {package} failed: {done.stderr.strip()[-300:]}"
    return None


def attempt(tool: Run, work: Callable[[], None]) -> Run:
    """``work`` filling ``tool``; an error is kept in ``tool.failed`` (the benchmark then fails)."""
    try:
        work()
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as err:
        tool.failed = f"{type(err).__name__}: {err}"
    return tool


def run_protkit(name: str, model: Path, int8: bool, bench: Benchmark, work: Path) -> Run:
    """``protkit embed``, ``index``, ``search`` and ``dedup`` on the benchmark FASTA."""
    tool, cli = Run(name, "protkit"), protkit_command()
    out = work / name.replace(" ", "-")
    out.mkdir()
    embed = [*cli, "embed", "--model", str(model), *(["--int8"] if int8 else [])]

    def steps() -> None:
        warm = out / "warm.fasta"  # a one-time ONNX export is cached, not timed
        write_fasta(bench.records[:2], warm)
        timed([*embed, "--input", str(warm), "--output", str(out / "warm.parquet")], work)
        tool.start_up = timed([*cli, "--help"], work)
        vectors, index, hits, groups = out / "embeddings.parquet", out / "index", out / "hits.parquet", out / "dedup.parquet"
        tool.steps["embed"] = timed([*embed, "--input", str(bench.fasta), "--output", str(vectors)], work)
        tool.steps["index"] = timed([*cli, "index", "--embeddings", str(vectors), "--output", str(index)], work)
        tool.steps["search"] = timed([*cli, "search", "--index", str(index), "--query", str(vectors), "--k", str(K),
                                      "--min-score", str(THRESHOLD), "--output", str(hits)], work)
        tool.steps["dedup"] = timed([*cli, "dedup", "--embeddings", str(vectors), "--threshold", str(THRESHOLD),
                                     "--output", str(groups)], work)
        tool.reports["search"] = Report(hits=ranked_hits(pq.read_table(hits).to_pylist()))
        table = pq.read_table(groups, columns=["id", "representative"]).to_pylist()
        tool.reports["dedup"] = Report(groups={row["id"]: row["representative"] for row in table})

    return attempt(tool, steps)


def ranked_hits(rows: Sequence[dict]) -> dict[str, list[str]]:
    """``{query: [hit, ...]}`` best first from rows with query_id, hit_id and rank (protkit search)."""
    hits = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["query_id"], r["rank"])):
        if row["hit_id"] != row["query_id"]:
            hits[row["query_id"]].append(row["hit_id"])
    return dict(hits)


MMSEQS_CLUSTERS = {  # name -> easy-* workflow and its options
    "mmseqs easy-linclust": ("easy-linclust", []),
    "mmseqs easy-linclust --min-seq-id 0.9": ("easy-linclust", ["--min-seq-id", "0.9"]),
    "mmseqs easy-cluster --min-seq-id 0.9": ("easy-cluster", ["--min-seq-id", "0.9"]),
}


def run_mmseqs(bench: Benchmark, work: Path, threads: int) -> list[Run]:
    """``mmseqs easy-search`` all against all, then the clusterings of ``MMSEQS_CLUSTERS``."""
    runs = [Run("mmseqs easy-search", "search"), *(Run(name, "cluster") for name in MMSEQS_CLUSTERS)]
    problem = tool_problem("mmseqs")
    if problem:
        for r in runs:
            r.skipped = problem
        return runs
    options = ["--threads", str(threads), "-v", "1"]

    def search() -> None:
        hits = work / "mmseqs.m8"
        runs[0].steps["search"] = timed(["mmseqs", "easy-search", str(bench.fasta), str(bench.fasta), str(hits),
                                         str(work / "mmseqs-tmp"), *options], work)
        runs[0].reports["search"] = Report(hits=m8_hits(hits))

    def cluster(r: Run, number: int) -> Callable[[], None]:
        workflow, extra = MMSEQS_CLUSTERS[r.name]

        def steps() -> None:
            prefix = work / f"mmseqs-cluster{number}"
            r.steps["cluster"] = timed(["mmseqs", workflow, str(bench.fasta), str(prefix), str(work / f"mmseqs-tmp{number}"),
                                        *extra, *options], work)
            r.reports["cluster"] = Report(groups=tsv_groups(Path(f"{prefix}_cluster.tsv")))
        return steps

    attempt(runs[0], search)
    for number, r in enumerate(runs[1:]):
        attempt(r, cluster(r, number))
    return runs


def m8_hits(path: Path) -> dict[str, list[str]]:
    """``{query: [target, ...]}`` in file order (MMseqs2 sorts each query's hits best first), self left out."""
    hits = defaultdict(list)
    for line in path.read_text().splitlines():
        query, target = line.split("\t", 2)[:2]
        if target != query and target not in hits[query]:
            hits[query].append(target)
    return dict(hits)


def tsv_groups(path: Path) -> dict[str, str]:
    """``{member: representative}`` from MMseqs2's ``_cluster.tsv``."""
    return {member: rep for rep, member in (line.split("\t") for line in path.read_text().splitlines())}


def run_cdhit(bench: Benchmark, work: Path, threads: int) -> Run:
    """``cd-hit -c 0.9 -n 5``: clusters at 90% identity (over the shorter sequence)."""
    tool = Run("cd-hit -c 0.9", "cluster")
    problem = tool_problem("cd-hit")
    if problem:
        tool.skipped = problem
        return tool

    def cluster() -> None:
        out = work / "cdhit.fasta"
        tool.steps["cluster"] = timed(["cd-hit", "-i", str(bench.fasta), "-o", str(out), "-c", "0.9", "-n", "5",
                                       "-M", "0", "-T", str(threads), "-d", "0"], work)
        tool.reports["cluster"] = Report(groups=clstr_groups(Path(f"{out}.clstr")))

    return attempt(tool, cluster)


def clstr_groups(path: Path) -> dict[str, str]:
    """``{member: cluster}`` from CD-HIT's ``.clstr`` (``-d 0``: whole ids)."""
    groups, cluster = {}, ""
    for line in path.read_text().splitlines():
        if line.startswith(">Cluster"):
            cluster = line[1:].strip()
        else:  # "0\t231aa, >P12345... *" or "... at 96.97%"
            groups[line.split(">", 1)[1].split("...", 1)[0]] = cluster
    return groups


# --- the benchmark ----------------------------------------------------------------------------
def run(device: torch.device, quick: bool, data_dir: Path) -> Result:
    if device.type != "cpu":
        return Result(KEY, TITLE, device_name(device), status="skipped",
                      message="CPU only: MMseqs2 and CD-HIT run on the CPU; protkit embed on a GPU is B2's")
    result = Result(KEY, TITLE, device_name(device))
    s = QUICK if quick else FULL
    threads = os.cpu_count() or 1
    given = os.environ.get(MODEL_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="protkit-b8-") as tmp, scratch_cache(Path(tmp) / "cache"):
        work = Path(tmp)
        bench = build_input(s, data_dir, work / "proteins.fasta")
        model = Path(given) if given else saved_student(student_model(quick, device), work / "student")
        runs = [run_protkit("protkit fp32", model, False, bench, work),
                *([run_protkit("protkit int8", model, True, bench, work)] if s.int8 else []),
                *run_mmseqs(bench, work, threads), run_cdhit(bench, work, threads)]
    for r in runs:
        result.require(not r.failed, f"{r.name}: {r.failed}")
    scores = {(r.name, kind): score(report, bench.copies) for r in runs for kind, report in r.reports.items()}
    result.tables += [time_table(runs, bench), search_table(runs, scores, s), cluster_table(runs, scores, s)]
    add_goals(result, runs, scores)
    result.notes += setting_notes(s, bench, given, quick, threads)
    result.notes += verdict_notes(scores) + start_up_note(runs)
    return result


def setting_notes(s: Settings, bench: Benchmark, given: str | None, quick: bool, threads: int) -> list[str]:
    """What was run on what, and how to read the tables."""
    model_line = (f"the student in {given}" if given else
                  f"{'a tiny test config' if quick else 'ProtHash-V2-384-Tiny'} with SEEDED RANDOM WEIGHTS: "
                  f"these rows measure the mechanics (speed, what cosine on near-identical sequences gives), "
                  f"not biology; set {MODEL_VARIABLE}=DIR to run a trained student")
    notes = [
        f"Input: {bench.n:,} proteins in one FASTA: {bench.n - len(bench.copies):,} DeepLoc proteins "
        f"({s.min_residues}-{s.max_residues} residues, seeded sample) and {len(bench.copies)} planted copies "
        f"({s.per_level} per level, each of a different source; substitutions plus 1-3 residue indels, 20% of "
        f"the edits; identity = identical aligned positions / longer length, within half a residue of the level).",
        f"Model: {model_line}.",
        f"Timing: wall clock of each command as a subprocess, in one run on {threads} cores (mmseqs --threads "
        f"{threads}, cd-hit -T {threads}, torch/onnxruntime default threads); includes process start-up and model "
        f"loading. protkit's one-time ONNX export (int8 and fp32 on the CPU) is done before timing, as a "
        f"user's second run would find it cached.",
        f"Other pairs: pairs of distinct proteins a tool reports (a search hit, or two members of one cluster) "
        f"that are not a copy and its source. DeepLoc holds real homologues, so some of them are true relatives, "
        f"not errors. protkit search reports hits of cosine >= {THRESHOLD} (--min-score, the dedup threshold); "
        f"mmseqs easy-search hits of E-value <= 1e-3 (its default, up to 300 per query). Recall counts "
        f"reported hits only, so a source below cosine {THRESHOLD} is a miss for protkit search.",
        "Identity thresholds differ: CD-HIT -c 0.9 counts identity over the shorter sequence, mmseqs "
        "--min-seq-id over the alignment (with 80% coverage by default); the planted levels use the longer "
        "sequence, so a 90% copy sits on the edge of both 0.9 thresholds, and 80% copies lie below them by "
        "design (linclust's defaults set no identity floor but find few copies below 98% identity here: it "
        "compares only sequences that share one of a few selected k-mers).",
    ]
    if not given:
        notes.append("Near-identical sequences give near-identical mean-pooled vectors whatever the weights, so even "
                     "a random student ranks 98% copies first; the 80-90% rows, where mmseqs easy-search wins, are "
                     "where a trained student's embeddings should matter.")
    return notes


def start_up_note(runs: Sequence[Run]) -> list[str]:
    """How much of protkit's time is embedding, and what the other steps cost."""
    protkit = next((r for r in runs if r.kind == "protkit" and r.steps), None)
    if protkit is None:
        return []
    total, others = sum(protkit.steps.values()), [protkit.steps[k] for k in ("index", "search", "dedup")]
    embedding = protkit.steps["embed"] / total
    verdict = "the student's forward pass" if embedding >= 0.5 else "mostly start-up"
    return [f"{protkit.name}: embedding is {100 * embedding:.0f}% of the four steps; index, search and dedup take "
            f"{min(others):.1f}-{max(others):.1f} s each, and `protkit --help` alone {protkit.start_up:.1f} s "
            f"(process start-up, importing torch), so on this input protkit's time is {verdict}."]


def seconds_cell(bench: Benchmark, seconds: float) -> str:
    return f"{bench.per_thousand(seconds):.2f}"


def time_table(runs: Sequence[Run], bench: Benchmark) -> Table:
    table = Table(f"B8 time, {bench.n:,} proteins (seconds per 1,000 proteins of the input; wall seconds)",
                  ["tool", "step", "s per 1,000 proteins", "wall s"])
    for r in runs:
        if r.skipped or r.failed:
            table.rows.append([r.name, "-", "SKIPPED" if r.skipped else "FAILED", r.skipped or r.failed])
            continue
        for step, seconds in r.steps.items():
            table.rows.append([r.name, step, seconds_cell(bench, seconds), f"{seconds:.1f}"])
        if r.kind == "protkit":
            searched = searching(r.steps)
            table.rows.append([r.name, "embed + index + search", seconds_cell(bench, searched), f"{searched:.1f}"])
            table.rows.append([r.name, "all four", seconds_cell(bench, sum(r.steps.values())),
                               f"{sum(r.steps.values()):.1f}"])
    return table


def percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def search_table(runs: Sequence[Run], scores: dict, s: Settings) -> Table:
    levels = [f"{percent(level)} copies: rank 1 / top {K}" for level in LEVELS]
    table = Table(f"B8 search, all against all: the source among a planted copy's hits ({s.per_level} copies per level)",
                  ["tool", *levels, "other pairs reported", "reports"])
    for r in runs:
        if r.kind == "cluster":
            continue
        protkit = r.kind == "protkit"
        label = f"{r.name} search" if protkit else r.name
        found = scores.get((r.name, "search"))
        if found is None:
            table.rows.append(missing_row(label, r))
            continue
        table.rows.append([label, *[" / ".join(map(percent, found.recall[lv])) for lv in LEVELS], f"{found.other_pairs:,}",
                           f"top {K}, cosine >= {THRESHOLD}" if protkit else "E <= 1e-3, up to 300"])
    return table


def cluster_table(runs: Sequence[Run], scores: dict, s: Settings) -> Table:
    table = Table(f"B8 near-duplicate groups: copy and source in one cluster ({s.per_level} copies per level)",
                  ["tool", *[f"{percent(level)} copies" for level in LEVELS], "other pairs in clusters", "clusters"])
    for r in runs:
        if r.kind == "search":
            continue
        kind = "dedup" if r.kind == "protkit" else "cluster"
        label = f"{r.name} dedup --threshold {THRESHOLD}" if kind == "dedup" else r.name
        found = scores.get((r.name, kind))
        if found is None:
            table.rows.append(missing_row(label, r))
            continue
        table.rows.append([label, *[percent(found.recall[lv][0]) for lv in LEVELS], f"{found.other_pairs:,}", found.detail])
    return table


def missing_row(label: str, r: Run) -> list[str]:
    """The row of a tool that did not run: SKIPPED or FAILED under every level, and why."""
    return [label, *["SKIPPED" if r.skipped else "FAILED"] * len(LEVELS), "-", r.skipped or r.failed]


@dataclass
class ShareGoal(Goal):
    """A goal on a share (recall): shown as percentages rather than a speed-up."""

    def row(self) -> list[str]:
        row = super().row()
        row[1] = f">= {percent(self.target)}"
        row[2] = "n/a" if self.measured is None else f"{100 * self.measured:.1f}%"
        return row


def add_goals(result: Result, runs: Sequence[Run], scores: dict) -> None:
    top = max(LEVELS)
    for name in [r.name for r in runs if r.kind == "protkit"]:
        found = scores.get((name, "search"))
        result.goals.append(ShareGoal(f"{name} search: source at rank 1 for {percent(top)}-identity copies",
                                      GOAL_RECALL, found.recall[top][0] if found else None))
    steps = {r.name: r.steps for r in runs if not r.skipped and not r.failed}
    mmseqs = steps.get("mmseqs easy-search", {}).get("search")
    for name in [r.name for r in runs if r.kind == "protkit"]:
        protkit = steps.get(name)
        speedup = mmseqs / searching(protkit) if mmseqs and protkit else None
        result.goals.append(Goal(f"{name} embed + index + search vs mmseqs easy-search (time per 1,000 proteins)",
                                 GOAL_SPEEDUP, speedup, "same FASTA, same run" if speedup else "a tool did not run",
                                 speedup is not None))


def searching(steps: dict[str, float]) -> float:
    """Seconds of protkit's way to search: embed, index and search."""
    return sum(steps[k] for k in ("embed", "index", "search"))


def verdict_notes(scores: dict) -> list[str]:
    """Where alignment finds planted pairs that protkit fp32 misses, and where it does not, per level."""
    lines = []
    searched = scores.get(("protkit fp32", "search")), scores.get(("mmseqs easy-search", "search"))
    if None not in searched:
        lines.append(compare_levels(f"search, source within the top {K}", "mmseqs easy-search",
                                    *(s.recall for s in searched), column=1))
    clusters = {name: found for (name, kind), found in scores.items() if kind == "cluster"}
    dedup = scores.get(("protkit fp32", "dedup"))
    if dedup is not None and clusters:
        best = {lv: max(found.recall[lv][0] for found in clusters.values()) for lv in LEVELS}
        lines.append(compare_levels("grouping, copy with its source", "the best alignment clustering",
                                    dedup.recall, {lv: (v,) for lv, v in best.items()}, column=0))
    return lines


def compare_levels(what: str, rival: str, ours: dict, theirs: dict, column: int) -> str:
    """``Alignment wins at ...; ties at ...; protkit wins at ...`` for one recall column."""
    verdicts = {"alignment wins": [], "tie": [], "protkit fp32 wins": []}
    for lv in LEVELS:
        a, b = ours[lv][column], theirs[lv][column]
        verdicts["alignment wins" if b > a else "tie" if b == a else "protkit fp32 wins"].append(percent(lv))
    said = "; ".join(f"{verdict} at {', '.join(levels)}" for verdict, levels in verdicts.items() if levels)
    return f"{what.capitalize()}, protkit fp32 vs {rival}: {said} identity."


if __name__ == "__main__":
    from benchmarks import common

    raise SystemExit(common.main(sys.modules[__name__]))
