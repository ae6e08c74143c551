"""The ``protkit finetune`` and ``protkit predict`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from protkit.cli.types import fraction_up_to, non_negative_int, positive_float, positive_int
from protkit.embed.settings import OVERLENGTH
from protkit.finetune.settings import (
    DEFAULT_BATCH_TOKENS, DEFAULT_EPOCHS, DEFAULT_LORA_RANK, DEFAULT_LR_FULL, DEFAULT_LR_LORA, DEFAULT_PATIENCE,
    DEFAULT_VALID_FRACTION, MAX_VALID_FRACTION, TASKS, FinetuneSettings, LabelOptions,
)  # fmt: skip
from protkit.sequences.alphabet import ALPHABET_POLICIES

FINETUNE_DESCRIPTION = (
    "Train a ProtHash student (or the ESMC teacher) to predict your own labels, on a CPU in minutes. Labels come "
    "from a FASTA file's headers (--label-regex) or from a CSV/TSV/parquet table (--label-column). A tenth of the "
    "proteins (by a hash of their id) is held out for validation; training stops when the validation score stops "
    "improving and keeps the best epoch. Output: a Hugging Face model directory (AutoModelForSequenceClassification "
    "or AutoModelForTokenClassification with trust_remote_code=True, or protkit predict), metrics.json (the model "
    "beside a frozen-embedding probe and an amino-acid composition baseline) and tensorboard/. A killed run "
    "re-started with the same arguments resumes from its last finished epoch."
)
PREDICT_DESCRIPTION = (
    "Predict the labels of every protein of a FASTA file with a model written by protkit finetune. Output: parquet "
    "with id, length, truncated, prediction and probabilities (one per class or label; per residue for per-residue "
    "models) or value (regression), in FASTA order."
)


def add_label_options(parser: argparse.ArgumentParser) -> None:
    labels = parser.add_argument_group("labels", "a FASTA file takes --label-regex; a table the column options")
    labels.add_argument("--label-regex", default=None, metavar="REGEX",
                        help=r"FASTA: a regular expression with one capture group that takes the label from each "
                        r"header line (the text after '>'), e.g. '^\S+\s+\S+-([MS])\b' for DeepLoc's "
                        "'>Q9H400 Cell.membrane-M test'; records it does not match are skipped and counted")
    labels.add_argument("--label-column", action="append", default=[], metavar="NAME", dest="label_columns",
                        help="table (.csv, .tsv, .parquet; .gz ok): the label column; repeat it for several labels "
                        "(a multi-label task: one 0/1 column per label). --task tokens: one label character per "
                        "residue (e.g. 'HHHEEL--'), or a parquet list with one value per residue")
    labels.add_argument("--sequence-column", default="sequence", metavar="NAME",
                        help="table: the column of amino-acid sequences (default: sequence)")
    labels.add_argument("--id-column", default="id", metavar="NAME",
                        help="table: the column of unique ids (default: id)")
    labels.add_argument("--alphabet", choices=ALPHABET_POLICIES, default="reject",
                        help="records with letters that are not amino acids: reject (skip and count them; default) "
                        "or error (stop at the first)")


def add_finetune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("finetune", help="fine-tune a student or the teacher on your own labels",
                                 description=FINETUNE_DESCRIPTION)
    parser.add_argument("--model", required=True,
                        help="the model to start from: a student directory (results/models/VARIANT, fp32; not its "
                        "int8/ artifact) or the teacher: esmc_300m, esmc_600m, an ESMC weights file")
    parser.add_argument("--train", required=True, type=Path, metavar="FILE", help="the labelled proteins to learn from")
    parser.add_argument("--test", type=Path, default=None, metavar="FILE",
                        help="labelled proteins to score the result on, read like --train (never trained on)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="the fine-tuned model's directory")
    add_label_options(parser)
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="auto (default): several --label-column -> multilabel; labels that are all numbers "
                        "with more than 10 distinct values -> regression; else classification. tokens (one label "
                        "per residue) must be asked for")
    fraction = fraction_up_to(MAX_VALID_FRACTION)
    parser.add_argument("--valid-fraction", type=fraction, default=DEFAULT_VALID_FRACTION, metavar="F",
                        help=f"share of the training proteins held out to choose the best epoch (default "
                        f"{DEFAULT_VALID_FRACTION}; chosen by a hash of the id, so a protein stays on its side; 0: "
                        "none, the last epoch is kept)")
    parser.add_argument("--test-fraction", type=fraction, default=0.0, metavar="F",
                        help="without --test: hold out this share of the training proteins (by a hash of the id) as "
                        "the test set, scored once at the end and never trained on (default 0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lora", type=positive_int, default=None, metavar="R",
                      help=f"train small LoRA adapters of rank R on every linear layer plus the new classifier "
                      f"(default, R={DEFAULT_LORA_RANK}); they are merged into the weights at the end")
    mode.add_argument("--full", action="store_true", help="train every weight instead of LoRA adapters")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help=f"peak learning rate (default {DEFAULT_LR_LORA} with LoRA, {DEFAULT_LR_FULL} with --full)")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS,
                        help=f"passes over the training proteins, at most (default {DEFAULT_EPOCHS})")
    parser.add_argument("--patience", type=non_negative_int, default=DEFAULT_PATIENCE,
                        help=f"stop after this many epochs without a better validation score (default "
                        f"{DEFAULT_PATIENCE}; 0: never stop early)")
    parser.add_argument("--batch-tokens", type=positive_int, default=DEFAULT_BATCH_TOKENS,
                        help=f"padded tokens per batch (default {DEFAULT_BATCH_TOKENS}); lower it if memory runs out")
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="tokens per protein incl. CLS/EOS; longer proteins are cut to their first residues "
                        "(default: the model's context length)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the new classifier's weights and of the batch order (default 0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the frozen-embedding probe and the composition baseline in metrics.json")
    parser.add_argument("--no-resume", action="store_true", help="discard the checkpoints of an unfinished run")


def add_predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("predict", help="predict labels for a FASTA file with a fine-tuned model",
                                 description=PREDICT_DESCRIPTION)
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="a protkit finetune --output directory")
    parser.add_argument("--input", required=True, type=Path, help="FASTA file (plain or gzip)")
    parser.add_argument("--output", required=True, type=Path, help="output parquet file (written atomically)")
    parser.add_argument("--batch-tokens", type=positive_int, default=None,
                        help=f"padded tokens per batch (default {DEFAULT_BATCH_TOKENS})")
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="tokens per sequence incl. CLS/EOS (default: the model's context length)")
    parser.add_argument("--overlength", choices=OVERLENGTH, default="truncate",
                        help="sequences longer than --max-length: truncate (default; flagged in the truncated "
                        "column), drop or error")
    parser.add_argument("--alphabet", choices=ALPHABET_POLICIES, default="reject",
                        help="records with letters that are not amino acids: reject (skip, listed in the metadata; "
                        "default) or error")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")


def run_finetune(args: argparse.Namespace) -> None:
    """``protkit finetune``: the options as :class:`FinetuneSettings`, then the run."""
    from protkit.finetune.run import finetune

    labels = LabelOptions(args.label_regex, args.sequence_column, args.id_column, tuple(args.label_columns),
                          args.alphabet)
    finetune(FinetuneSettings(
        model=args.model, train=args.train, output=args.output, test=args.test, labels=labels, task=args.task,
        valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
        lora_rank=None if args.full else (args.lora or DEFAULT_LORA_RANK),
        lr=args.lr, epochs=args.epochs, batch_tokens=args.batch_tokens, max_length=args.max_length, seed=args.seed,
        patience=args.patience, device=args.device, baselines=not args.no_baselines, resume=not args.no_resume,
    ))


def run_predict(args: argparse.Namespace) -> None:
    """``protkit predict``: the predictions of a fine-tuned model for a FASTA file."""
    from protkit.finetune.predict import predict_fasta

    predict_fasta(args.model, args.input, args.output, max_tokens=args.batch_tokens, max_length=args.max_length,
                  overlength=args.overlength, alphabet=args.alphabet, device=args.device)
