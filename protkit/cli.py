"""``protkit`` command line: ``protkit embed --model DIR_OR_HUB_ID --input X.fasta --output Y.parquet``.

User errors (missing file, malformed FASTA, over-long sequence with ``--overlength error``, bad
option) print one ``protkit: error: ...`` line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import protkit
from protkit.embed import EMBED_POOLINGS, OVERLENGTH, EmbedError

log = logging.getLogger("protkit")


def _poolings(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in EMBED_POOLINGS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"choose one or more of {', '.join(EMBED_POOLINGS)} (comma-separated), got {text!r}"
        )
    return list(dict.fromkeys(names))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protkit", description=protkit.__doc__)
    parser.add_argument("--version", action="version", version=f"protkit {protkit.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    embed = commands.add_parser(
        "embed",
        help="embed the sequences of a FASTA file into a parquet file",
        description="Embed every record of a FASTA file (.gz ok) with a ProtHash student. Output: parquet "
        "with id, length, truncated and one vector column per pooling, in FASTA order.",
    )
    embed.add_argument("--model", required=True, help="model directory (results/models/VARIANT) or Hugging Face Hub id")
    embed.add_argument("--input", required=True, help="FASTA file (.fasta, .fa, .faa, optionally .gz)")
    embed.add_argument("--output", required=True, help="output parquet file (written atomically)")
    embed.add_argument("--pooling", type=_poolings, default=["mean"], help="comma-separated: mean, cls (default: mean)")
    embed.add_argument("--max-tokens", type=_positive, default=16384, help="padded tokens per batch (default: 16384)")
    embed.add_argument("--max-length", type=_positive, default=None,
                       help="tokens per sequence incl. CLS/EOS (default: the model's context length)")
    embed.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    embed.add_argument("--int8", action="store_true", help="use the int8 model (MODEL/int8/)")
    embed.add_argument("--fp16", action="store_true", help="store vectors as float16 (half the file size)")
    embed.add_argument("--overlength", choices=OVERLENGTH, default="truncate",
                       help="sequences longer than --max-length: truncate (default), drop or error")
    return parser


def _embed(args: argparse.Namespace) -> None:
    from protkit.embed import embed_fasta, load_model

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"input FASTA {args.input}: no such file")
    model = load_model(args.model, int8=args.int8)
    embed_fasta(
        model,
        args.input,
        args.output,
        poolings=args.pooling,
        max_tokens=args.max_tokens,
        max_length=args.max_length,
        overlength=args.overlength,
        store_dtype="fp16" if args.fp16 else "fp32",
        device=args.device,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``protkit`` script; returns the exit status."""
    from protkit.fasta import FastaError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _embed(args)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FastaError, EmbedError) as err:
        print(f"protkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("protkit: interrupted; no output written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
