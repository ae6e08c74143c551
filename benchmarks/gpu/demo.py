"""The demo pipeline on the device: ``snakemake`` with config/demo.yaml and ``device: cuda``, in a scratch
working directory, timed.

    python -m benchmarks.gpu.demo --out DIR --device cuda          # the GPU run's part
    python -m benchmarks.gpu.demo --out DIR --device cpu --quick   # the dry run (benchmarks/gpu/demo-dry.yaml)

Writes ``DIR/demo.json`` (wall time, jobs, exit status) and copies the run's summary tables into ``DIR/demo/``;
the snakemake log goes to the part's log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRY_CONFIG = Path(__file__).with_name("demo-dry.yaml")
# The dry run's targets: one variant through distillation, int8, evaluation and embedding (the GPU run: all).
DRY_TARGETS = ("results/eval/demo-small/metrics.json", "results/embeddings/demo-small/PKSI.parquet")
SUMMARIES = ("results/eval/summary.tsv", "results/eval/demo-small/metrics.json", "results/eval/stages_summary.tsv", "results/search/summary.tsv",
             "results/finetune/summary.tsv")


def snakemake_command(work: Path, device: str, quick: bool) -> list[str]:
    configs = [str(ROOT / "config" / "demo.yaml")] + ([str(DRY_CONFIG)] if quick else [])
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", *configs, "--config", f"device={device}", "--cores", str(os.cpu_count() or 1),
            *(DRY_TARGETS if quick else ())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="token sizes (benchmarks/gpu/demo-dry.yaml)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="protkit-gpu-demo-"))
    argv_run = snakemake_command(work, args.device, args.quick)
    print("$ " + " ".join(argv_run), flush=True)
    start = time.perf_counter()
    code = subprocess.run(argv_run, cwd=ROOT).returncode
    seconds = time.perf_counter() - start
    logs = sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))
    log_text = logs[-1].read_text() if logs else ""
    jobs = log_text.count("localrule ") + log_text.count("\nrule ")
    kept = args.out / "demo"
    kept.mkdir(parents=True, exist_ok=True)
    for name in SUMMARIES:
        if (work / name).is_file():
            shutil.copyfile(work / name, kept / name.replace("/", "_").removeprefix("results_"))
    if (work / "logs").is_dir():  # each job's log: what a failed or slow step did
        shutil.copytree(work / "logs", kept / "logs", dirs_exist_ok=True)
    record = {"seconds": round(seconds, 1), "exit_status": code, "jobs": jobs, "device": args.device,
              "quick": args.quick, "command": "snakemake --cores N --configfile config/demo.yaml"
              + (" benchmarks/gpu/demo-dry.yaml" if args.quick else "") + f" --config device={args.device}"}
    (args.out / "demo.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
