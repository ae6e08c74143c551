"""Reading a labelled file: a FASTA file whose headers hold the label (``--label-regex``, one capture
group on the header text after ``>``, as the probes read them), or a CSV/TSV/parquet table with a
sequence column, an id column and one or more label columns (several: one 0/1 value each, a
multi-label task). Per-residue labels (``--task tokens``) come from one table column: a string with
one label character per residue, or (parquet) a list with one value per residue (None: unlabelled).

Sequences are cleaned and checked as ``protkit embed`` does (:mod:`protkit.sequences.alphabet`):
records with letters that are not amino acids are skipped and counted (``--alphabet reject``) or
stop the run (``error``); a file that reads as DNA/RNA is refused. Records without a label are
skipped and counted. Every error names the file, the line (tables: line of a CSV/TSV, row of a
parquet file), the id and the option to change.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from protkit.finetune.errors import FinetuneError
from protkit.finetune.settings import LabelOptions
from protkit.sequences.alphabet import NucleotideCounter, check_alphabet, clean_sequence
from protkit.sequences.fasta import header_regex, read_fasta

log = logging.getLogger(__name__)

TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}  # text tables (also .gz)
PARQUET_SUFFIX = ".parquet"
MAX_EXAMPLES = 20  # skipped records listed per file
FASTA_LABEL = "label"  # the name of a FASTA file's one label
UNLABELLED = ("no_label", "empty_sequence")  # reasons a record is skipped whatever --alphabet says


@dataclass
class LabelledRecord:
    """One usable protein: cleaned sequence and its raw label texts."""

    id: str
    sequence: str  # cleaned, upper-case, not truncated
    labels: tuple[str, ...]  # one per label column; --task tokens: one per residue ("" = unlabelled)
    where: str  # "FILE line N, id X": for error messages


@dataclass
class LabelledFile:
    """The usable records of a file and what was left out."""

    path: Path
    records: list[LabelledRecord]
    label_names: tuple[str, ...]  # the label columns (a FASTA file: "label")
    n_records: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records
    examples: list[dict] = field(default_factory=list)  # the first skipped records: id, where, reason


@dataclass
class RawRow:
    id: str
    sequence: str
    labels: tuple[str, ...] | None  # None: no label
    where: str


def table_separator(path: Path) -> str | None:
    """``,``/tab for a CSV/TSV file (``.gz`` ok), ``parquet`` for parquet, None for FASTA."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(PARQUET_SUFFIX):
        return "parquet"
    return next((sep for suffix, sep in TABLE_SEPARATORS.items() if name.endswith(suffix)), None)


def read_labelled(path: str | Path, options: LabelOptions, per_residue: bool = False) -> LabelledFile:
    """The labelled proteins of ``path`` (see the module docstring); FinetuneError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labelled file {path}: no such file")
    separator = table_separator(path)
    if separator is None:
        rows, names = fasta_rows(path, options, per_residue), (FASTA_LABEL,)
    else:
        rows, names = table_rows(path, separator, options, per_residue), options.label_columns
    return accept_rows(path, rows, names, options, per_residue)


def compile_label_regex(pattern: str | None, path: Path) -> re.Pattern:
    if pattern is None:
        raise FinetuneError(f"{path}: a FASTA file needs --label-regex, a regular expression with one capture group "
                            r"that takes the label from the header line (e.g. '^\S+\s+\S+-([MS])\b'); a table "
                            "(.csv, .tsv, .parquet) gives labels in columns instead")
    try:
        return header_regex(pattern)
    except ValueError as err:
        raise FinetuneError(f"--label-regex {err}") from None


def fasta_rows(path: Path, options: LabelOptions, per_residue: bool) -> Iterator[RawRow]:
    """Rows of a FASTA file, the label taken from each header by ``--label-regex``."""
    if per_residue:
        raise FinetuneError(f"{path}: --task tokens reads per-residue labels from a table column (CSV/TSV/parquet "
                            "with --sequence-column and --label-column), not from FASTA headers")
    if options.label_columns:
        raise FinetuneError(f"{path}: --label-column is for CSV/TSV/parquet tables; a FASTA file's labels come from "
                            "its headers with --label-regex")
    pattern = compile_label_regex(options.label_regex, path)
    first, matched = None, 0
    for record in read_fasta(path):
        first = first or f"line {record.line}: {record.description!r}"
        found = pattern.search(record.description)
        label = (found.group(1) or "").strip() if found else ""
        matched += bool(label)
        yield RawRow(record.id, record.sequence, (label,) if label else None,
                     f"{path} line {record.line}, id {record.id}")
    if first and not matched:
        raise FinetuneError(f"{path}: --label-regex '{pattern.pattern}' takes a label from no header (first header, "
                            f"{first})")


def read_columns(path: Path, separator: str, columns: list[str]) -> dict[str, list]:
    """The named columns of a table as lists (missing columns: FinetuneError naming the options)."""
    import pandas as pd
    import pyarrow.parquet as pq

    if separator == "parquet":
        available = pq.read_schema(path).names
    else:
        available = list(pd.read_csv(path, sep=separator, nrows=0).columns)
    missing = [c for c in dict.fromkeys(columns) if c not in available]
    if missing:
        raise FinetuneError(f"{path}: no column {', '.join(map(repr, missing))} "
                            f"(it has {', '.join(map(str, available))}); "
                            "name the columns with --id-column, --sequence-column and --label-column")
    if separator == "parquet":
        return pq.read_table(path, columns=list(dict.fromkeys(columns))).to_pydict()
    frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, usecols=list(dict.fromkeys(columns)))
    return {c: frame[c].tolist() for c in columns}


def table_rows(path: Path, separator: str, options: LabelOptions, per_residue: bool) -> Iterator[RawRow]:
    """Rows of a CSV/TSV/parquet table."""
    if options.label_regex is not None:
        raise FinetuneError(f"{path}: --label-regex is for FASTA files; a table gives its labels in columns "
                            "(--label-column NAME)")
    if not options.label_columns:
        raise FinetuneError(f"{path}: name the label column with --label-column (several for a multi-label task)")
    if per_residue and len(options.label_columns) != 1:
        raise FinetuneError(f"{path}: --task tokens takes one --label-column (per-residue labels), "
                            f"got {len(options.label_columns)}")
    columns = read_columns(path, separator, [options.id_column, options.sequence_column, *options.label_columns])
    for row, identifier in enumerate(columns[options.id_column]):
        place = f"row {row + 1}" if separator == "parquet" else f"line {row + 2}"
        identifier = cell_text(identifier)
        if not identifier:
            raise FinetuneError(f"{path} {place}: empty id (--id-column {options.id_column})")
        cells = [columns[c][row] for c in options.label_columns]
        if per_residue:
            labels = residue_labels(cells[0])
        else:
            if any(isinstance(c, (list, tuple)) for c in cells):
                raise FinetuneError(f"{path} {place}, id {identifier}: a label column holds a list (one value per "
                                    "residue?); per-residue labels need --task tokens")
            texts = tuple(cell_text(c) for c in cells)
            labels = texts if all(texts) else None  # a missing value in a label column: no label
        yield RawRow(identifier, cell_text(columns[options.sequence_column][row]), labels,
                     f"{path} {place}, id {identifier}")


def cell_text(value: Any) -> str:
    """A table cell as text; "" when missing (None, NaN, empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def residue_labels(value: Any) -> tuple[str, ...] | None:
    """Per-residue labels from a cell: one per character of a string, one per item of a list."""
    if isinstance(value, str):
        return tuple(value.strip()) or None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return tuple(cell_text(item) for item in value) or None


def residue_count_matches(labels: tuple[str, ...], raw: str, sequence: str, where: str, column: str) -> tuple[str, ...]:
    """``labels`` for the cleaned ``sequence`` (labels of stripped stop codons dropped); FinetuneError
    when their number is not the residue count."""
    if len(labels) == len(sequence):
        return labels
    if len(labels) == len(raw.strip()) > len(sequence):
        return labels[: len(sequence)]
    raise FinetuneError(f"{where}: {len(labels)} per-residue labels for {len(sequence)} residues; column {column!r} "
                        "(--label-column) needs one label per residue")


def row_problem(row: RawRow, sequence: str) -> tuple[str, str] | None:
    """``(reason, description)`` when a row cannot be used, else None."""
    if row.labels is None:
        return "no_label", "no label"
    if not sequence:
        return "empty_sequence", "no residues"
    return check_alphabet(sequence)


def accept_rows(path: Path, rows: Iterable[RawRow], names: tuple[str, ...], options: LabelOptions,
                per_residue: bool) -> LabelledFile:
    """Clean and check every row (module docstring); count and list what is left out."""
    labelled = LabelledFile(path, [], tuple(names), 0)
    skipped, seen, nucleotides = Counter(), {}, NucleotideCounter()
    for row in rows:
        labelled.n_records += 1
        if row.id in seen:
            raise FinetuneError(f"{row.where}: the id repeats {seen[row.id]}; ids must be unique "
                                f"(--id-column {options.id_column})")
        seen[row.id] = row.where
        sequence = clean_sequence(row.sequence)
        nucleotides.add(sequence)
        problem = row_problem(row, sequence)
        if problem is not None:
            if options.alphabet == "error" and problem[0] not in UNLABELLED:
                raise FinetuneError(f"{row.where}: {problem[1]} (--alphabet error; --alphabet reject skips such "
                                    "records)")
            skipped[problem[0]] += 1
            if len(labelled.examples) < MAX_EXAMPLES:
                labelled.examples.append({"id": row.id, "where": row.where, "reason": problem[0]})
            continue
        labels = residue_count_matches(row.labels, row.sequence, sequence, row.where, names[0]) if per_residue \
            else row.labels
        labelled.records.append(LabelledRecord(row.id, sequence, labels, row.where))
    if nucleotides.looks_like_nucleotides():
        raise FinetuneError(f"{path}: looks like DNA/RNA, not protein ({nucleotides.share:.0%} of the first "
                            f"{nucleotides.residues:,} letters are A/C/G/T/U/N); translate the genes to protein first")
    labelled.skipped = dict(sorted(skipped.items()))
    if skipped:
        log.warning("%s: %d of %d records skipped (%s), e.g. %s", path, sum(skipped.values()), labelled.n_records,
                    ", ".join(f"{k}: {v}" for k, v in labelled.skipped.items()),
                    "; ".join(f"{e['where']} ({e['reason']})" for e in labelled.examples[:3]))
    if not labelled.records:
        raise FinetuneError(f"{path}: no usable labelled protein ({labelled.n_records} records; skipped: "
                            f"{labelled.skipped or 'none'})")
    return labelled
