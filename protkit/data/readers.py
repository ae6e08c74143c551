"""Reading training data: Hugging Face datasets, FASTA and parquet files, one record at a time.

Nothing here holds a data set in memory: the Hub download is copied batch by batch, FASTA files
are parsed record by record, and parquet files are read batch by batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from protkit.io.atomic import atomic_path
from protkit.io.outputs import claim_outputs
from protkit.sequences.fasta import read_fasta

log = logging.getLogger(__name__)

SOURCES = ("fasta", "parquet")
READ_BATCH_ROWS = 16_384  # rows per batch read from parquet inputs and the Hub download
RAW_ROW_GROUP_ROWS = 65_536  # rows per row group of the downloaded table (later read batch by batch)


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, line/row and sequence id."""


@dataclass(frozen=True)
class RawRecord:
    id: str
    sequence: str
    origin: str  # "path line N" (FASTA header line, 1-based) or "path row N" (parquet, 0-based)


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
    id and sequence columns to ``out_parquet`` as ``id``/``sequence`` strings, batch by batch.

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
    schema = pa.schema([("id", pa.string()), ("sequence", pa.string())])
    out_parquet = Path(out_parquet)
    rows = 0
    with claim_outputs([out_parquet]), atomic_path(out_parquet) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in dataset.select_columns(wanted).with_format("arrow").iter(batch_size=READ_BATCH_ROWS):
            sequences = batch.column(sequence_column).cast(pa.string())
            if id_column is None:
                ids = pa.array([f"row{i}" for i in range(rows, rows + batch.num_rows)], pa.string())
            else:
                ids = batch.column(id_column).cast(pa.string())
            writer.write_table(pa.table({"id": ids, "sequence": sequences}), row_group_size=RAW_ROW_GROUP_ROWS)
            rows += batch.num_rows
    log.info("%s@%s split %s: wrote %d sequences to %s", repo_id, revision, split, rows, out_parquet)
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
    for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=[id_column, sequence_column]):
        ids = batch.column(id_column).to_pylist()
        seqs = batch.column(sequence_column).to_pylist()
        for rid, seq in zip(ids, seqs):
            if rid is None or str(rid).strip() == "":
                raise DataError(f"{path} row {row}: empty id in column {id_column!r}")
            yield RawRecord(str(rid), seq or "", f"{path} row {row}")
            row += 1
