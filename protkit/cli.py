"""``protkit`` command line.

- ``protkit embed --model MODEL --input X.fasta --output Y.parquet``: embed with a student or the teacher;
- ``protkit export --model DIR --format prothash|onnx --output OUT``: a student in another format;
- ``protkit index|search|dedup|cluster|hash``: search and group embedded proteins (:mod:`protkit.cli_search`).

User errors (missing or malformed files, foreign model formats, bad options) print one
``protkit: error: ...`` line and exit with status 2, without a traceback and without an output file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import protkit
from protkit import cli_search
from protkit.alphabet import ALPHABET_POLICIES
from protkit.cli_types import positive_int
from protkit.embedder_loading import BACKENDS, CPU_MAX_TOKENS, CUDA_MAX_TOKENS
from protkit.embedders import EMBED_POOLINGS, PRECISIONS

log = logging.getLogger("protkit")
OVERLENGTH = ("truncate", "drop", "error")
EXPORT_FORMATS = ("prothash", "onnx")


def _poolings(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in EMBED_POOLINGS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"choose one or more of {', '.join(EMBED_POOLINGS)} (comma-separated), got {text!r}"
        )
    return list(dict.fromkeys(names))


def _add_embed(commands: argparse._SubParsersAction) -> None:
    embed = commands.add_parser(
        "embed",
        help="embed the sequences of a FASTA file into a parquet file",
        description="Embed every record of a FASTA file (.gz ok) with a ProtHash student or the ESMC teacher. "
        "Output: parquet with id, length, truncated and one vector column per pooling, in FASTA order. "
        "A killed run re-started with the same arguments resumes from its finished parts.",
    )
    embed.add_argument("--model", required=True,
                       help="student directory (results/models/VARIANT, or one written by the prothash package), "
                       "Hugging Face Hub id, .onnx file, or the teacher: esmc_300m, esmc_600m, an ESMC weights file")
    embed.add_argument("--input", required=True, help="FASTA file (plain or gzip)")
    embed.add_argument("--output", required=True, help="output parquet file (written atomically)")
    embed.add_argument("--pooling", type=_poolings, default=["mean"],
                       help=f"comma-separated: {', '.join(EMBED_POOLINGS)} (default: mean)")
    embed.add_argument("--per-residue", metavar="FILE", default=None,
                       help="also write per-residue vectors (CLS/EOS removed) to this parquet file; read it with "
                       "protkit.residues.read_residues")
    embed.add_argument("--max-tokens", type=positive_int, default=None,
                       help=f"padded tokens per batch (default: {CPU_MAX_TOKENS} on a CPU, {CUDA_MAX_TOKENS} on a GPU: "
                       "the fastest measured, README 'Backends')")
    embed.add_argument("--max-length", type=positive_int, default=None,
                       help="tokens per sequence incl. CLS/EOS (default: the model's context length)")
    embed.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    embed.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="students: torch or onnxruntime (default auto: onnxruntime for pooled fp32/int8 vectors on "
                       "the CPU, the fastest measured; torch on GPUs, for --precision bf16/fp16 and --per-residue)")
    embed.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="float type of the forward pass (default fp32; bf16/fp16 for GPUs)")
    embed.add_argument("--int8", action="store_true",
                       help="int8 student: torch uses MODEL/int8/ (torchao); onnxruntime its own dynamic int8 (see README)")
    embed.add_argument("--fp16", action="store_true", help="store vectors as float16 (half the file size)")
    embed.add_argument("--overlength", choices=OVERLENGTH, default="truncate",
                       help="sequences longer than --max-length: truncate (default), drop or error")
    embed.add_argument("--alphabet", choices=ALPHABET_POLICIES, default="reject",
                       help="records with letters that are not amino acids: reject (skip, listed in the "
                       "metadata; default) or error")
    embed.add_argument("--chunk-residues", type=positive_int, default=None,
                       help="residues per resumable part (default 262144; 65536 with --per-residue)")
    embed.add_argument("--no-resume", action="store_true", help="discard an unfinished run of this output")


def _add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write a student in the prothash package's format or as ONNX",
        description="prothash: a directory that prothash.model.ProtHash.from_pretrained loads (CLS vectors "
        "equal protkit's). onnx: inputs input_ids, attention_mask (B, L); outputs cls, mean, max (teacher "
        "width) and cls_native, mean_native, max_native.",
    )
    export.add_argument("--model", required=True, help="student directory or Hugging Face Hub id (fp32)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--output", required=True, help="output directory (prothash) or .onnx file (onnx)")
    export.add_argument("--int8", action="store_true", help="onnx only: the int8 ONNX model (see README)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protkit", description=protkit.__doc__)
    parser.add_argument("--version", action="version", version=f"protkit {protkit.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_embed(commands)
    _add_export(commands)
    cli_search.add_commands(commands)
    return parser


def _embed(args: argparse.Namespace) -> None:
    from protkit.embed import embed_fasta
    from protkit.embedder_loading import load_embedder

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"input FASTA {args.input}: no such file")
    embedder = load_embedder(args.model, int8=args.int8, precision=args.precision, backend=args.backend,
                             device=args.device, per_residue=args.per_residue is not None,
                             poolings=args.pooling)
    embed_fasta(
        embedder,
        args.input,
        args.output,
        poolings=args.pooling,
        max_tokens=args.max_tokens,
        max_length=args.max_length,
        overlength=args.overlength,
        alphabet=args.alphabet,
        store_dtype="fp16" if args.fp16 else "fp32",
        per_residue=args.per_residue,
        chunk_residues=args.chunk_residues,
        resume=not args.no_resume,
    )


def _export(args: argparse.Namespace) -> None:
    from protkit.export import export_model

    export_model(args.model, args.format, args.output, int8=args.int8)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``protkit`` script; returns the exit status."""
    from protkit.embedders import EmbedError
    from protkit.fasta import FastaError
    from protkit.models.prothash_format import ModelFormatError
    from protkit.onnx_export import OnnxExportError
    from protkit.onnx_runtime import OnnxModelError
    from protkit.vectors import SearchError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs which CPU build it picked
    try:
        if args.command == "embed":
            _embed(args)
        elif args.command == "export":
            _export(args)
        else:
            cli_search.run(args)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            FastaError, EmbedError, ModelFormatError, OnnxExportError, OnnxModelError, SearchError) as err:
        message = " ".join(str(err).split())  # one line, whatever the library wrote
        print(f"protkit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("protkit: interrupted; finished parts are kept for a re-run with the same arguments", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
