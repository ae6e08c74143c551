"""The ``protkit embed`` and ``protkit export`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from protkit.cli.types import pooling_list, positive_int
from protkit.embed.loading import BACKENDS, CPU_MAX_TOKENS, CUDA_MAX_TOKENS
from protkit.embed.settings import OVERLENGTH
from protkit.export import FORMATS as EXPORT_FORMATS
from protkit.models.precision import PRECISION_OPTIONS
from protkit.sequences.alphabet import ALPHABET_POLICIES
from protkit.sequences.pooling import EMBED_POOLINGS


EMBED_DESCRIPTION = (
    "Embed every record of a FASTA file (.gz ok) with a ProtHash student or the ESMC teacher. Output: parquet with "
    "id, length, truncated and one vector column per pooling (or one, --concatenate), in FASTA order. A killed run "
    "re-started with the same arguments resumes from its finished parts."
)
EXPORT_DESCRIPTION = (
    "prothash: a directory that prothash.model.ProtHash.from_pretrained loads (CLS vectors equal protkit's). onnx: "
    "inputs input_ids, attention_mask (B, L); outputs cls, mean, max (teacher width) and cls_native, mean_native, "
    "max_native. hf: a Hugging Face directory (a student, or the teacher: esmc_300m, esmc_600m or an ESMC weights "
    "file) that AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification (and for the teacher "
    "AutoModelForMaskedLM) load with trust_remote_code=True and only torch and transformers installed."
)


def add_embed(commands: argparse._SubParsersAction) -> None:
    embed = commands.add_parser("embed", help="embed the sequences of a FASTA file into a parquet file",
                                description=EMBED_DESCRIPTION)
    embed.add_argument("--model", required=True,
                       help="student directory (results/models/VARIANT, or one written by the prothash package), "
                       "Hugging Face Hub id, .onnx file, or the teacher: esmc_300m, esmc_600m, an ESMC weights file")
    embed.add_argument("--input", required=True, help="FASTA file (plain or gzip)")
    embed.add_argument("--output", required=True, help="output parquet file (written atomically)")
    embed.add_argument("--pooling", type=pooling_list, default=["mean"],
                       help=f"comma-separated: {', '.join(EMBED_POOLINGS)} (default: mean); over the residues: "
                       "mean, max and, as ESM++ (FastPLMs) defines them, std/var (population), median (the lower "
                       "middle value for an even count), norm (L2); std, var, median and norm run in torch "
                       "(auto picks it)")
    embed.add_argument("--concatenate", action="store_true",
                       help="one column instead of one per pooling, named by the poolings joined with '+' "
                       "(e.g. mean+std): their vectors side by side, in the order given")
    embed.add_argument("--per-residue", metavar="FILE", default=None,
                       help="also write per-residue vectors (CLS/EOS removed) to this parquet file; read it with "
                       "protkit.embed.residues.read_residues")
    embed.add_argument("--max-tokens", type=positive_int, default=None,
                       help=f"padded tokens per batch (default: {CPU_MAX_TOKENS} on a CPU, {CUDA_MAX_TOKENS} on a GPU: "
                       "the fastest measured, README 'Backends')")
    embed.add_argument("--max-length", type=positive_int, default=None,
                       help="tokens per sequence incl. CLS/EOS (default: the model's context length)")
    embed.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    embed.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="students: torch or onnxruntime (default auto: on a CPU the path measured fastest on its "
                       "class, protkit --version names it: onnxruntime fp32 on AVX2 CPUs, torch bf16 on AMX CPUs; "
                       "torch on GPUs, for --precision bf16/fp16 and --per-residue)")
    embed.add_argument("--precision", default="auto", choices=PRECISION_OPTIONS,
                       help="float type of the forward pass (default auto: bf16 on CPUs with bf16 units and for the "
                       "teacher on GPUs, fp32 elsewhere)")
    embed.add_argument("--int8", action="store_true",
                       help="int8 student: torch uses MODEL/int8/ (torchao); onnxruntime its own dynamic int8 (see README)")
    embed.add_argument("--fp16", action="store_true", help="store vectors as float16 (half the file size)")
    embed.add_argument("--overlength", choices=OVERLENGTH, default="truncate",
                       help="sequences longer than --max-length: truncate (default), drop or error")
    embed.add_argument("--alphabet", choices=ALPHABET_POLICIES, default="reject",
                       help="records with letters that are not amino acids: reject (skip, listed in the "
                       "metadata; default) or error")
    embed.add_argument("--stage", type=int, choices=range(1, 5), default=None, metavar="N",
                       help="ProtHash 1.0 students: the encoder stage whose vectors to write, 1 (earliest) to 4 "
                       "(the last, default); refused for other models")
    embed.add_argument("--chunk-residues", type=positive_int, default=None,
                       help="residues per resumable part (default 262144; 65536 with --per-residue)")
    embed.add_argument("--no-resume", action="store_true", help="discard an unfinished run of this output")


def add_export(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="write a student in the prothash package's format or as ONNX",
                                 description=EXPORT_DESCRIPTION)
    export.add_argument("--model", required=True,
                        help="student directory or Hugging Face Hub id (fp32); for --format hf also the teacher")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--output", required=True, help="output directory (prothash, hf) or .onnx file (onnx)")
    export.add_argument("--int8", action="store_true", help="onnx only: the int8 ONNX model (see README)")


def run_embed(args: argparse.Namespace) -> None:
    """``protkit embed``: load the model, embed the FASTA file."""
    from protkit.embed.loading import load_embedder
    from protkit.embed.run import embed_fasta

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"input FASTA {args.input}: no such file")
    embedder = load_embedder(args.model, int8=args.int8, precision=args.precision, backend=args.backend,
                             device=args.device, per_residue=args.per_residue is not None,
                             poolings=args.pooling, stage=args.stage)
    embed_fasta(
        embedder,
        args.input,
        args.output,
        poolings=args.pooling,
        concatenate=args.concatenate,
        max_tokens=args.max_tokens,
        max_length=args.max_length,
        overlength=args.overlength,
        alphabet=args.alphabet,
        store_dtype="fp16" if args.fp16 else "fp32",
        per_residue=args.per_residue,
        chunk_residues=args.chunk_residues,
        resume=not args.no_resume,
    )


def run_export(args: argparse.Namespace) -> None:
    """``protkit export``: write the student in another format."""
    from protkit.export import export_model

    export_model(args.model, args.format, args.output, int8=args.int8)
