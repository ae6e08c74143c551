"""One benchmark on one device, for the GPU run: its section as Markdown and its result as JSON.

    python -m benchmarks.gpu.bench B12 --out DIR --device cuda [--quick] [--data DIR]

Writes ``DIR/results/<KEY>.json`` (``Result.to_dict``, merged into docs/ by ``benchmarks.gpu.merge``) and
``DIR/<KEY>.md``; exit status 1 when the benchmark failed (a skip is not a failure).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from benchmarks.common import DATA_DIR, execute, shell_command, today
from benchmarks.run_all import BENCHMARKS
from protkit.io.atomic import write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("key", choices=list(BENCHMARKS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny models and sizes (the dry run)")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (use --device cpu --quick for the dry run)")
    command = "benchmarks/gpu/run.sh" + (" --dry-run" if args.quick else "")
    result = execute(BENCHMARKS[args.key], torch.device(args.device), args.quick, args.data)
    (args.out / "results").mkdir(parents=True, exist_ok=True)
    write_text(args.out / "results" / f"{args.key}.json", json.dumps(result.to_dict(), indent=1) + "\n")
    write_text(args.out / f"{args.key}.md", result.markdown(command, today()))
    print(result.markdown(shell_command(sys.argv), today()))
    return 1 if result.status == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(main())
