"""The GPU run's parts, each in its own process under its own time box, results written as they come.

    python -m benchmarks.gpu.run --out DIR             # on the GPU machine (benchmarks/gpu/run.sh runs this)
    python -m benchmarks.gpu.run --out DIR --dry-run   # on a CPU: every part at tiny sizes, CUDA -> CPU

Parts, in order of worth: the environment, the CUDA-marked tests (tests/gpu), B12 (the GPU benchmark),
the demo pipeline with ``device: cuda``, then B5's distillation steps/s and B11's precision errors on the
device. A part gets its time box or what is left of the whole run's deadline, whichever is
less; a part that runs over is killed and the next one starts, so a run cut short still returns what it
measured. ``DIR/parts.tsv`` says how each part ended; ``python -m benchmarks.gpu.merge DIR`` puts the
figures into docs/benchmarks.md and docs/scaling.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 440  # the 8 minutes on an H100, less ~40 s for run.sh's install of the carried wheels
DRY_DEADLINE_SECONDS = 170  # the dry run in `make test`: under 3 minutes on 2 CPU cores
CARRIED_DATA = ROOT / ".gpu" / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Part:
    name: str
    seconds: int  # time box on the GPU
    dry_seconds: int  # time box in the dry run
    argv: tuple[str, ...]  # after the Python interpreter; {out} {device} {quick} {data} filled in


PARTS = (
    Part("environment", 60, 30, ("-m", "benchmarks.gpu.environment", "--out", "{out}")),
    Part("cuda-tests", 200, 60, ("-m", "pytest", "-m", "cuda", "tests/gpu", "-q", "-p", "no:cacheprovider",
                                 "--junitxml", "{out}/cuda-tests.xml")),
    Part("B12", 150, 40, ("-m", "benchmarks.gpu.bench", "B12", "--out", "{out}", "--device", "{device}", "{quick}",
                          "--data", "{data}")),
    Part("demo", 180, 90, ("-m", "benchmarks.gpu.demo", "--out", "{out}", "--device", "{device}", "{quick}")),
    Part("B5", 60, 30, ("-m", "benchmarks.gpu.bench", "B5", "--out", "{out}", "--device", "{device}", "{quick}",
                        "--data", "{data}")),
    Part("B11", 60, 30, ("-m", "benchmarks.gpu.bench", "B11", "--out", "{out}", "--device", "{device}", "{quick}",
                         "--data", "{data}")),
)


def data_dir() -> Path:
    """The DeepLoc proteins: carried to the device in .gpu/data, else ../shared/data."""
    return CARRIED_DATA if (CARRIED_DATA / "deeploc_test.fasta").is_file() else SHARED_DATA


def command(part: Part, out: Path, dry_run: bool) -> list[str]:
    fields = {"out": str(out), "device": "cpu" if dry_run else "cuda", "quick": "--quick" if dry_run else "",
              "data": str(data_dir())}
    return [sys.executable, *(a.format(**fields) for a in part.argv if a.format(**fields))]


def environment(dry_run: bool, out: Path) -> dict[str, str]:
    """Variables the parts read: where to record, what device and size the CUDA tests use."""
    env = dict(os.environ)
    env.update({
        "PROTKIT_GPU_DEVICE": "cpu" if dry_run else "cuda",
        "PROTKIT_GPU_SIZE": "tiny" if dry_run else "full",
        "PROTKIT_GPU_DATA": str(data_dir()),
        "PROTKIT_GPU_RECORD": str(out / "fidelity.jsonl"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_part(part: Part, out: Path, dry_run: bool, seconds: float) -> tuple[str, float]:
    """Run one part, its output to ``out/logs/<part>.log``: ``(status, wall seconds)``."""
    log_path = out / "logs" / f"{part.name}.log"
    argv, start = command(part, out, dry_run), time.perf_counter()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        process = subprocess.Popen(argv, cwd=ROOT, env=environment(dry_run, out),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = "ok" if process.wait(timeout=seconds) == 0 else f"failed (exit {process.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the part and whatever it started (pytest workers, snakemake jobs)
            process.wait()
            status = f"timed out after {seconds:.0f} s"
    return status, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the figures (the device's $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what make test runs)")
    parser.add_argument("--only", default="", help="comma-separated part names (default: all)")
    parser.add_argument("--deadline", type=float, default=None,
                        help=f"seconds for the whole run (default {DEADLINE_SECONDS}, dry run {DRY_DEADLINE_SECONDS})")
    args = parser.parse_args(argv)
    chosen = [p for p in PARTS if not args.only or p.name in args.only.split(",")]
    deadline = args.deadline or (DRY_DEADLINE_SECONDS if args.dry_run else DEADLINE_SECONDS)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    parts_file = args.out / "parts.tsv"
    parts_file.write_text("part\tstatus\tseconds\ttime box\n")
    start, failed = time.perf_counter(), 0
    for part in chosen:
        left = deadline - (time.perf_counter() - start)
        box = min(part.dry_seconds if args.dry_run else part.seconds, left)
        if box < 5:
            status, seconds = "not run: the run's deadline had passed", 0.0
        else:
            print(f"gpu-run: {part.name} (time box {box:.0f} s) ...", flush=True)
            status, seconds = run_part(part, args.out, args.dry_run, box)
        failed += status != "ok"
        with parts_file.open("a") as f:  # appended as each part ends: a cut-short run keeps the lines so far
            f.write(f"{part.name}\t{status}\t{seconds:.1f}\t{box:.0f}\n")
        print(f"gpu-run: {part.name}: {status} ({seconds:.0f} s)", flush=True)
    total = time.perf_counter() - start
    print(f"gpu-run: {len(chosen) - failed} of {len(chosen)} parts ok in {total:.0f} s; figures in {args.out}; "
          f"merge them with: python -m benchmarks.gpu.merge {args.out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
