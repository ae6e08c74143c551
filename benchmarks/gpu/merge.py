"""Put a GPU run's figures into the docs: one command after the device run.

    python -m benchmarks.gpu.merge OUT                  # OUT: the folder the run wrote ($OUT on the device)
    python -m benchmarks.gpu.merge OUT --docs /tmp/docs # into a copy of docs/ (what the dry-run test does)

docs/benchmarks.md: the sections and summary rows of the benchmarks the run measured (B12, B5, B11 on the
GPU) replace those of the same benchmark and device, as ``run_all.py --update`` does; B12's section also
gets the run's parts, the CUDA-marked tests with what they measured, and the demo pipeline's wall time.
docs/scaling.md: the block between ``<!-- gpu-run:start -->`` and ``<!-- gpu-run:end -->`` gets the measured
throughputs and the GPU-hours they give for Swiss-Prot and UniRef50.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.b12_gpu import BEST_STUDENT, TEACHER_BEST
from benchmarks.common import Result, Table, rate
from benchmarks.run_all import BENCHMARKS, update_document
from protkit.io.atomic import write_text

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "benchmarks/gpu/run.sh (device tool: carry .gpu), merged by python -m benchmarks.gpu.merge"
GPU_KEY = "B12"
SCALING_START, SCALING_END = "<!-- gpu-run:start -->", "<!-- gpu-run:end -->"
SWISSPROT_RESIDUES = 205e6  # docs/scaling.md, "Inputs"
UNIREF50_RESIDUES = 14e9


class MergeError(RuntimeError):
    pass


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MergeError(f"{path}: {err}") from None


def results(out: Path) -> list[Result]:
    """The run's benchmark results, in the documents' order."""
    found = {p.stem: Result.from_dict(read_json(p)) for p in sorted((out / "results").glob("B*.json"))}
    if not found:
        raise MergeError(f"{out / 'results'} holds no B*.json: did the run's benchmark parts run? see {out / 'parts.tsv'}")
    return [found[key] for key in BENCHMARKS if key in found]


def parts_table(out: Path) -> Table:
    rows = [line.split("\t") for line in (out / "parts.tsv").read_text().splitlines()[1:] if line.strip()]
    return Table("GPU run: parts (time box in seconds)", ["part", "status", "seconds", "time box"], rows)


def tests_table(out: Path) -> Table:
    """Each CUDA-marked test: outcome, seconds and the figures it recorded."""
    figures: dict[str, dict] = {}
    if (out / "fidelity.jsonl").is_file():
        for line in (out / "fidelity.jsonl").read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                figures[record.pop("test")] = record
    table = Table("GPU run: CUDA-marked tests (tests/gpu)", ["test", "outcome", "seconds", "measured"])
    report = out / "cuda-tests.xml"
    if not report.is_file():
        table.rows.append(["-", "no report (the part did not finish)", "-", "-"])
        return table
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        name = case.get("name", "?")
        measured = figures.get(name, {})
        shown = ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in measured.items()
                          if k not in ("device", "size"))
        table.rows.append([name, outcome, f"{float(case.get('time', 0)):.1f}", shown or "-"])
    return table


def demo_note(out: Path) -> str:
    if not (out / "demo.json").is_file():
        return "Demo pipeline: not run to the end (see parts)."
    demo = read_json(out / "demo.json")
    return (f"Demo pipeline on {demo['device']}: `{demo['command']}`: {demo['seconds']:.0f} s wall, {demo['jobs']} jobs, "
            f"exit status {demo['exit_status']}" + (" (dry run: token sizes)" if demo["quick"] else "") + ".")


def with_run_record(result: Result, out: Path) -> Result:
    """B12's result with the run's parts, tests, demo and environment added."""
    result.tables += [parts_table(out), tests_table(out)]
    result.notes.append(demo_note(out))
    if (out / "environment.md").is_file():
        result.notes.append("Environment: " + " ".join(line.lstrip("- ") + ";" for line in
                                                       (out / "environment.md").read_text().splitlines()))
    return result


def scaling_block(result: Result) -> str:
    """The measured block of docs/scaling.md from B12's figures."""
    teacher, student = result.figures.get(TEACHER_BEST), result.figures.get(BEST_STUDENT)
    lines = [SCALING_START, "", f"### Measured on a GPU ({result.device}, {result.machine.split(';')[0]})", ""]
    if teacher is None or student is None:
        return "\n".join(lines + ["The run's B12 figures are missing (see docs/benchmarks.md, B12).", "", SCALING_END])
    lines += [
        "| step | measured residues/s | Swiss-Prot (205M residues) | UniRef50 (14B residues) |",
        "| --- | --- | --- | --- |",
        f"| teacher cache, esmc_300m (its fastest path on the DeepLoc mix, B12) | {rate(teacher)} | "
        f"{SWISSPROT_RESIDUES / teacher / 3600:.2f} GPU-h | {UNIREF50_RESIDUES / teacher / 3600:.1f} GPU-h |",
        f"| embedding, ProtHash-V2-384-Tiny (its fastest path with pooled cosine >= 0.999 to fp32, B12) | "
        f"{rate(student)} | {SWISSPROT_RESIDUES / student / 3600:.3f} GPU-h | {UNIREF50_RESIDUES / student / 3600:.2f} GPU-h |",
        "",
        "Random weights (no real ESMC offline), one GPU, the run of `benchmarks/gpu/run.sh` merged by "
        "`python -m benchmarks.gpu.merge`; these replace the estimates above for this GPU.",
        "",
        SCALING_END,
    ]
    return "\n".join(lines)


def replace_block(text: str, block: str, path: Path) -> str:
    if SCALING_START not in text or SCALING_END not in text:
        raise MergeError(f"{path} has no {SCALING_START} ... {SCALING_END} block to replace")
    head, rest = text.split(SCALING_START, 1)
    return head + block + rest.split(SCALING_END, 1)[1]


def merge(out: Path, docs: Path) -> list[str]:
    """Merge the run in ``out`` into ``docs``; the names of the benchmarks merged."""
    found = results(out)
    date = read_json(out / "environment.json").get("date", "") if (out / "environment.json").is_file() else ""
    found = [with_run_record(r, out) if r.key == GPU_KEY else r for r in found]
    benchmarks_md, scaling_md = docs / "benchmarks.md", docs / "scaling.md"
    write_text(benchmarks_md, update_document(benchmarks_md.read_text(), found, COMMAND, date))
    gpu = next((r for r in found if r.key == GPU_KEY and r.status != "skipped"), None)
    if gpu is not None:
        write_text(scaling_md, replace_block(scaling_md.read_text(), scaling_block(gpu), scaling_md))
    return [f"{r.key} ({r.device})" for r in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder the GPU run wrote")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="docs folder to update (default: docs/)")
    args = parser.parse_args(argv)
    try:
        merged = merge(args.out, args.docs)
    except (MergeError, ValueError, OSError) as err:
        print(f"protkit: error: {err}", file=sys.stderr)
        return 2
    print(f"merged {', '.join(merged)} into {args.docs / 'benchmarks.md'} and {args.docs / 'scaling.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
