"""Record this CPU's student paths for ``--backend auto --precision auto``: run B7 on the CPU and write its
rows (residues/s, min cosine to torch fp32 per path) as the entry of this machine's capability class in
``protkit/embed/cpu_paths.json``, then print the path ``auto`` now takes here.

    python -m benchmarks.cpu_paths --update docs/benchmarks.md   # full B7 sizes (~4 min on 2 cores), its
                                                                 # section replaced too; commit both after
    python -m benchmarks.cpu_paths --quick --table /tmp/paths.json   # the harness only

Run it on a quiet machine: the choice follows the numbers, and a loaded machine's numbers mislead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks import b7_backends
from benchmarks.common import DATA_DIR, FASTA_FILES, execute, shell_command, today
from benchmarks.run_all import update_document
from protkit.embed.cpu_paths import PATHS_FILE, choose_cpu_path
from protkit.io.atomic import write_json, write_text
from protkit.models.cpu import this_cpu


def record(result_entry: dict, table: Path, source: str) -> dict:
    """Put this CPU's measurements in ``table`` under its capability class; return the file's classes."""
    cpu = this_cpu()
    document = json_document(table)
    document["classes"][cpu.capability_class] = {"cpu": f"{cpu.describe()}, {os.cpu_count()} cores", "source": source,
                                                 **result_entry}
    write_json(table, document)
    return document["classes"]


def json_document(table: Path) -> dict:
    """``table``'s content, or the shipped table's when ``table`` does not exist yet."""
    return json.loads((table if table.is_file() else PATHS_FILE).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="B7's smoke sizes (do not commit their numbers)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help=f"directory of {' and '.join(FASTA_FILES)}")
    parser.add_argument("--table", type=Path, default=PATHS_FILE, help=f"the table to update (default {PATHS_FILE})")
    parser.add_argument("--update", type=Path, default=None, metavar="REPORT",
                        help="also replace B7's section of this report (docs/benchmarks.md), as run_all --update does")
    args = parser.parse_args(argv)
    if args.update is not None and (args.quick or not args.update.is_file()):
        parser.error(f"--update {args.update}: needs full sizes (no --quick) and an existing report")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    load = os.getloadavg()[0]
    result = execute(b7_backends, torch.device("cpu"), args.quick, args.data)
    if result.status != "ok":
        print(f"cpu_paths: B7 {result.status}: {result.message}; the table is unchanged", file=sys.stderr)
        return 1
    source = (f"B7{' --quick' if args.quick else ''} via python -m benchmarks.cpu_paths, {today()}, "
              f"load average {load:.1f} before")
    classes = record(b7_backends.measured_entry(result), args.table, source)
    if args.update is not None:
        command = shell_command([os.path.relpath(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)])
        print(result.markdown(command, today()))
        write_text(args.update, update_document(args.update.read_text(), [result], command, today()))
    path = choose_cpu_path(this_cpu(), int8=False, classes=classes)
    int8 = choose_cpu_path(this_cpu(), int8=True, classes=classes)
    print(f"{args.table}: class {this_cpu().capability_class} recorded; auto now runs students on {path.backend} "
          f"{path.precision} here ({path.reason}), --int8 on {int8.backend}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
