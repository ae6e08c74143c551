"""Training data: download/read protein sequences, clean and filter them, split by sequence hash.

Output (see docs/design.md): ``sequences.parquet`` with columns ``id``, ``sequence``, ``length``,
``split``, ``aliases`` and a ``filter_report.json`` beside it.

Rules applied by :func:`filter_and_split`, in this order for every record:

1. clean: upper-case, strip trailing ``*`` (stop codons written by gene callers);
2. alphabet: the 20 standard amino acids plus ``X B Z U O``; an internal ``*`` is reason
   ``internal_stop``, any other character (``J``, digits, gaps ``-``/``.``) is ``invalid_character``;
   policy ``reject`` drops the record (logged, counted), ``error`` raises :class:`DataError`;
3. length window in residues: shorter than ``min_length`` -> ``too_short``; longer than
   ``max_length`` -> kept as its first ``max_length`` residues (``truncate``) or ``too_long`` (``drop``);
4. exact duplicates of the cleaned (truncated) sequence: the first occurrence is kept, the ids of
   the others go to its ``aliases`` column (``;``-joined);
5. split: ``test`` iff ``int(sha256(salt + sequence)[:16], 16) / 2**64 < test_fraction``. It depends
   on the sequence only, so a sequence never changes side when the data set grows, shrinks or is
   re-ordered.

The report's ``examples`` holds up to 20 ids per rejection reason and also for ``truncated`` and
``duplicate`` (a repeated sequence, or the same id with the same sequence given twice).

Rows keep input order (order of first occurrence): the table is stable for a given input, and
the split column does not depend on order at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protkit.alphabet import ALPHABET_POLICIES, check_alphabet, clean_sequence
from protkit.atomic import atomic_path, write_json
from protkit.fasta import read_fasta

log = logging.getLogger(__name__)

OVERLENGTH_POLICIES = ("truncate", "drop")
SOURCES = ("fasta", "parquet")
MAX_EXAMPLES = 20  # example ids kept (and logged) per reason
COLUMNS = ("id", "sequence", "length", "split", "aliases")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sequence", pa.string()),
        ("length", pa.int32()),
        ("split", pa.string()),
        ("aliases", pa.string()),
    ]
)


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, line/row and sequence id."""


@dataclass(frozen=True)
class RawRecord:
    id: str
    sequence: str
    origin: str  # "path line N" (FASTA header line, 1-based) or "path row N" (parquet, 0-based)


# --------------------------------------------------------------------------- download / read


def download_hub_dataset(
    repo_id: str,
    revision: str,
    out_parquet: str | Path,
    split: str = "train",
    id_column: str | None = "id",
    sequence_column: str = "sequence",
    cache_dir: str | Path | None = None,
) -> Path:
    """Fetch a Hugging Face dataset (Hub id or local dataset directory) and atomically write its
    id and sequence columns to ``out_parquet`` as ``id``/``sequence`` strings.

    ``id_column=None`` numbers the rows instead (``row0``, ``row1``, ...).
    """
    import datasets

    dataset = datasets.load_dataset(
        repo_id, revision=revision, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
    )
    wanted = [c for c in (id_column, sequence_column) if c is not None]
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"dataset {repo_id} (revision {revision}, split {split}) has no column "
            f"{', '.join(map(repr, missing))}; available columns: {', '.join(dataset.column_names)}"
        )
    table = dataset.select_columns(wanted).with_format("arrow")[:]
    sequences = table.column(sequence_column).cast(pa.string())
    if id_column is None:
        ids = pa.array([f"row{i}" for i in range(table.num_rows)], pa.string())
    else:
        ids = table.column(id_column).cast(pa.string())
    out = pa.table({"id": ids, "sequence": sequences})
    out_parquet = Path(out_parquet)
    with atomic_path(out_parquet) as tmp:
        pq.write_table(out, tmp)
    log.info("%s@%s split %s: wrote %d sequences to %s", repo_id, revision, split, out.num_rows, out_parquet)
    return out_parquet


def read_sources(
    source: str,
    paths: Iterable[str | Path],
    id_column: str = "id",
    sequence_column: str = "sequence",
) -> Iterator[RawRecord]:
    """Stream records from FASTA files (``.gz`` ok; ids unique per file) or parquet files."""
    if source not in SOURCES:
        raise ValueError(f"data source must be one of {', '.join(SOURCES)}, got {source!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError(f"no input files given for data source {source!r}")
    for path in paths:
        if source == "fasta":
            for rec in read_fasta(path, unique_ids=True):
                yield RawRecord(rec.id, rec.sequence, f"{path} line {rec.line}")
        else:
            yield from _read_parquet(path, id_column, sequence_column)


def _read_parquet(path: Path, id_column: str, sequence_column: str) -> Iterator[RawRecord]:
    parquet = pq.ParquetFile(path)
    available = parquet.schema_arrow.names
    missing = [c for c in (id_column, sequence_column) if c not in available]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))}; available columns: {', '.join(available)}"
        )
    row = 0
    for batch in parquet.iter_batches(columns=[id_column, sequence_column]):
        ids = batch.column(id_column).to_pylist()
        seqs = batch.column(sequence_column).to_pylist()
        for rid, seq in zip(ids, seqs):
            if rid is None or str(rid).strip() == "":
                raise DataError(f"{path} row {row}: empty id in column {id_column!r}")
            yield RawRecord(str(rid), seq or "", f"{path} row {row}")
            row += 1


# --------------------------------------------------------------------------- filter and split


def split_of(sequence: str, salt: str, test_fraction: float) -> str:
    """``test`` iff the salted sha256 of the sequence, read as a fraction of 2**64, is below
    ``test_fraction``; ``train`` otherwise."""
    digest = hashlib.sha256((salt + sequence).encode("utf-8")).hexdigest()
    return "test" if int(digest[:16], 16) / 2**64 < test_fraction else "train"


class _Report:
    """Counts and example ids for filter_report.json."""

    def __init__(self) -> None:
        self.input = 0
        self.rejected: Counter[str] = Counter()
        self.truncated = 0
        self.duplicates = 0
        self.examples: dict[str, list[str]] = {}

    def note(self, reason: str, record: RawRecord, detail: str, level: int = logging.WARNING) -> None:
        """Remember an example id for ``reason`` and log the first few."""
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(record.id)
            log.log(level, "%s, id %s: %s (%s)", record.origin, record.id, detail, reason)

    def reject(self, reason: str, record: RawRecord, detail: str) -> None:
        self.rejected[reason] += 1
        self.note(reason, record, detail + ", dropped")

    def as_dict(self, kept: int, splits: Counter[str]) -> dict:
        for reason, count in {**self.rejected, "truncated": self.truncated, "duplicate": self.duplicates}.items():
            if count > MAX_EXAMPLES:
                log.warning("%d more sequences with reason %s (not logged one by one)", count - MAX_EXAMPLES, reason)
        return {
            "input": self.input,
            "kept": kept,
            "rejected": dict(sorted(self.rejected.items())),
            "truncated": self.truncated,
            "duplicates": self.duplicates,
            "split": {"train": splits["train"], "test": splits["test"]},
            "examples": dict(sorted(self.examples.items())),
        }


def _validate_filter_args(
    min_length: int, max_length: int, overlength: str, alphabet_policy: str, test_fraction: float
) -> None:
    if min_length < 1:
        raise ValueError(f"min_length must be at least 1, got {min_length}")
    if max_length < min_length:
        raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
    if overlength not in OVERLENGTH_POLICIES:
        raise ValueError(f"overlength must be one of {', '.join(OVERLENGTH_POLICIES)}, got {overlength!r}")
    if alphabet_policy not in ALPHABET_POLICIES:
        raise ValueError(f"alphabet_policy must be one of {', '.join(ALPHABET_POLICIES)}, got {alphabet_policy!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")


def filter_and_split(
    records: Iterable[RawRecord],
    *,
    min_length: int,
    max_length: int,
    overlength: str = "truncate",
    alphabet_policy: str = "reject",
    test_fraction: float,
    salt: str,
) -> tuple[pd.DataFrame, dict]:
    """Clean, filter, de-duplicate and split records (rules in the module docstring).

    Returns the sequences table (columns of docs/design.md, input order) and the filter report.
    Raises :class:`DataError` on an alphabet problem under policy ``error``, on an id used twice
    for different sequences, and when no sequence survives.
    """
    _validate_filter_args(min_length, max_length, overlength, alphabet_policy, test_fraction)
    report = _Report()
    rows: list[dict] = []
    row_of_sequence: dict[str, int] = {}
    seen_ids: dict[str, tuple[str, bytes]] = {}  # id -> (origin, digest of the raw sequence)
    for record in records:
        report.input += 1
        if _repeated_id(record, seen_ids):
            report.duplicates += 1
            report.note("duplicate", record, "same id and sequence seen before, skipped", logging.INFO)
            continue
        sequence = clean_sequence(record.sequence or "")
        problem = check_alphabet(sequence)
        if problem is not None:
            reason, detail = problem
            if alphabet_policy == "error":
                raise DataError(f"{record.origin}, id {record.id}: {detail} (policy: error)")
            report.reject(reason, record, detail)
            continue
        if len(sequence) < min_length:
            report.reject("too_short", record, f"{len(sequence)} residues < min_length {min_length}")
            continue
        if len(sequence) > max_length:
            if overlength == "drop":
                report.reject("too_long", record, f"{len(sequence)} residues > max_length {max_length}")
                continue
            report.truncated += 1
            report.note("truncated", record, f"{len(sequence)} residues cut to {max_length}", logging.INFO)
            sequence = sequence[:max_length]
        first = row_of_sequence.get(sequence)
        if first is not None:
            report.duplicates += 1
            rows[first]["aliases"].append(record.id)
            report.note("duplicate", record, f"same sequence as {rows[first]['id']}, kept as alias", logging.INFO)
            continue
        row_of_sequence[sequence] = len(rows)
        rows.append({"id": record.id, "sequence": sequence, "aliases": []})

    if not rows:
        raise DataError(
            f"no sequence left after filtering {report.input} input records "
            f"(rejected: {dict(report.rejected) or 'none'}); check min_length/max_length and the input files"
        )
    df = _table(rows, salt, test_fraction)
    splits = Counter(df["split"])
    for side in ("train", "test"):
        if test_fraction > 0 and splits[side] == 0:
            log.warning("split %s is empty (%d sequences, test_fraction %s)", side, len(df), test_fraction)
    return df, report.as_dict(len(df), splits)


def _repeated_id(record: RawRecord, seen_ids: dict[str, tuple[str, bytes]]) -> bool:
    """True if the id was seen with the same raw sequence; DataError if with a different one."""
    digest = hashlib.blake2b((record.sequence or "").encode("utf-8"), digest_size=16).digest()
    previous = seen_ids.get(record.id)
    if previous is None:
        seen_ids[record.id] = (record.origin, digest)
        return False
    origin, first_digest = previous
    if first_digest != digest:
        raise DataError(
            f"{record.origin}, id {record.id}: id already used by {origin} for a different sequence; "
            "ids must be unique across all input files"
        )
    return True


def _table(rows: list[dict], salt: str, test_fraction: float) -> pd.DataFrame:
    sequences = [r["sequence"] for r in rows]
    return pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "sequence": sequences,
            "length": pd.array([len(s) for s in sequences], dtype="int32"),
            "split": [split_of(s, salt, test_fraction) for s in sequences],
            "aliases": [";".join(r["aliases"]) for r in rows],
        }
    )


# --------------------------------------------------------------------------- write / read


def write_dataset(df: pd.DataFrame, report: dict, out_parquet: str | Path, out_report: str | Path) -> None:
    """Atomically write the sequences table (schema of docs/design.md) and the filter report."""
    table = pa.Table.from_pandas(df[list(COLUMNS)], schema=SCHEMA, preserve_index=False)
    with atomic_path(out_parquet) as tmp:
        pq.write_table(table, tmp)
    write_json(out_report, report)


def read_dataset(path: str | Path) -> pd.DataFrame:
    """The sequences table written by :func:`write_dataset`; DataError if a column is missing."""
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: not a protkit sequences table, missing column(s) {', '.join(missing)} "
            f"(has {', '.join(table.column_names)}); rerun the data rule"
        )
    return table.select(list(COLUMNS)).to_pandas()
