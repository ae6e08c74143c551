"""``protkit`` command line.

- ``protkit embed --model MODEL --input X.fasta --output Y.parquet``: embed with a student or the teacher;
- ``protkit export --model DIR --format prothash|onnx --output OUT``: a student in another format;
- ``protkit index|search|dedup|cluster|hash``: search and group embedded proteins (:mod:`protkit.cli.search`);
- ``protkit finetune`` / ``protkit predict``: train on your own labels, predict with the result (:mod:`protkit.cli.finetune`).

The commands live in :mod:`protkit.cli.embed`, :mod:`protkit.cli.search` and :mod:`protkit.cli.finetune`;
argument types in :mod:`protkit.cli.types`.

User errors (missing or malformed files, foreign model formats, bad options) print one
``protkit: error: ...`` line and exit with status 2, without a traceback and without an output file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import protkit
from protkit.cli.embed import add_embed, add_export, run_embed, run_export
from protkit.cli.finetune import add_finetune, add_predict, run_finetune, run_predict
from protkit.cli.search import add_commands, run_search
from protkit.embed.cpu_paths import describe_auto
from protkit.models.cpu import this_cpu

log = logging.getLogger("protkit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protkit", description=protkit.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"protkit {protkit.__version__}\nCPU: {this_cpu().describe()}\n"
                                f"auto on this CPU: {describe_auto(this_cpu())}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_embed(commands)
    add_export(commands)
    add_commands(commands)
    add_finetune(commands)
    add_predict(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``protkit`` script; returns the exit status."""
    from protkit.embed.embedder import EmbedError
    from protkit.finetune.errors import FinetuneError
    from protkit.io.logs import quiet_import_noise
    from protkit.io.metadata import FileFormatError
    from protkit.models.prothash.checkpoint import ModelFormatError
    from protkit.onnx.export import OnnxExportError
    from protkit.io.outputs import OutputError, disk_error
    from protkit.onnx.session import OnnxModelError
    from protkit.sequences.fasta import FastaError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs which CPU build it picked
    quiet_import_noise()  # torchao's absent optional kernels, torch's deprecation of a call torchao makes
    try:
        if args.command == "embed":
            run_embed(args)
        elif args.command == "export":
            run_export(args)
        elif args.command == "finetune":
            run_finetune(args)
        elif args.command == "predict":
            run_predict(args)
        else:
            run_search(args)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FastaError, EmbedError,
            ModelFormatError, OnnxExportError, OnnxModelError, FileFormatError, OutputError, FinetuneError) as err:
        return _error(err)
    except OSError as err:  # a full disk or a read-only file system met outside protkit's writers
        return _error(disk_error(err, err.filename or ".") or err)
    except KeyboardInterrupt:
        print("protkit: interrupted; finished parts are kept for a re-run with the same arguments", file=sys.stderr)
        return 130
    return 0


def _error(err: Exception) -> int:
    """Print ``err`` as one ``protkit: error:`` line; the exit status of a user error."""
    message = " ".join(str(err).split())  # one line, whatever the library wrote
    print(f"protkit: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
