"""The sequences table: its schema, the in-memory writer and reader, and the streaming writer.

The streaming writer holds one row group at a time, never the table. Rows are written as they are
kept, with an empty ``aliases`` cell. The ids of exact duplicates (``(row, alias id)`` pairs, in
input order) are buffered and spilled to sorted runs on disk; if there were any, a second pass reads
the table back one row group at a time, merges the runs (a stable k-way merge by row, so each row's
aliases keep input order) and rewrites it with the ``aliases`` column filled in.
"""

from __future__ import annotations

import heapq
import os
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protkit.data.readers import DataError
from protkit.io.atomic import atomic_path, write_json

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
ROW_GROUP_ROWS = 32_768  # rows per row group of sequences.parquet (and rows buffered in memory)
ALIAS_RUN_PAIRS = 200_000  # (row, alias id) pairs buffered before a sorted run is spilled to disk
ALIAS_READ_ROWS = 8_192  # pairs read at a time from each run while merging
ALIAS_SCHEMA = pa.schema([("row", pa.int64()), ("alias", pa.string())])


def write_dataset(df: pd.DataFrame, report: dict, out_parquet: str | Path, out_report: str | Path) -> None:
    """Atomically write an in-memory sequences table (schema of docs/design.md) and the filter report."""
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


@lru_cache(maxsize=1)
def file_schema() -> pa.Schema:
    """SCHEMA with the pandas metadata that :func:`write_dataset` stores (so both read back alike)."""
    sample = pd.DataFrame({"id": ["x"], "sequence": ["M"], "length": pd.array([1], dtype="int32"),
                           "split": ["train"], "aliases": [""]})
    return pa.Table.from_pandas(sample, schema=SCHEMA, preserve_index=False).schema


class RowGroupWriter:
    """Appends kept rows (id, sequence, split) to a parquet file one row group at a time."""

    def __init__(self, path: Path, row_group_rows: int = ROW_GROUP_ROWS):
        self.schema = file_schema()
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._writer = pq.ParquetWriter(path, self.schema)
        self._ids: list[str] = []
        self._sequences: list[str] = []
        self._splits: list[str] = []

    def append(self, rid: str, sequence: str, split: str) -> None:
        self._ids.append(rid)
        self._sequences.append(sequence)
        self._splits.append(split)
        if len(self._ids) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._ids:
            return
        n = len(self._ids)
        self._writer.write_table(pa.table({
            "id": pa.array(self._ids, pa.string()),
            "sequence": pa.array(self._sequences, pa.string()),
            "length": pa.array([len(s) for s in self._sequences], pa.int32()),
            "split": pa.array(self._splits, pa.string()),
            "aliases": pa.array([""] * n, pa.string()),
        }, schema=self.schema))
        self.rows += n
        self._ids, self._sequences, self._splits = [], [], []

    def close(self) -> None:
        self._flush()
        self._writer.close()


class AliasSpill:
    """``(row, alias id)`` pairs in input order, spilled to disk in sorted runs of bounded size."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.run_pairs = ALIAS_RUN_PAIRS
        self.count = 0
        self._buffer: list[tuple[int, str]] = []
        self._runs: list[Path] = []

    def add(self, row: int, alias: str) -> None:
        self._buffer.append((row, alias))
        self.count += 1
        if len(self._buffer) >= self.run_pairs:
            self._spill()

    def _spill(self) -> None:
        self._buffer.sort(key=itemgetter(0))  # stable: aliases of one row stay in input order
        path = self.directory / f"aliases-{len(self._runs):05d}.parquet"
        rows, aliases = zip(*self._buffer)
        table = pa.table({"row": pa.array(rows, pa.int64()), "alias": pa.array(aliases, pa.string())},
                         schema=ALIAS_SCHEMA)
        pq.write_table(table, path, row_group_size=ALIAS_READ_ROWS)
        self._runs.append(path)
        self._buffer = []

    def merged(self) -> Iterator[tuple[int, str]]:
        """Every pair, ordered by row; within a row in input order (runs are merged oldest first)."""
        self._buffer.sort(key=itemgetter(0))
        runs = [_read_run(path) for path in self._runs] + [iter(self._buffer)]
        return heapq.merge(*runs, key=itemgetter(0))  # ties go to the earlier iterable: stable


def _read_run(path: Path) -> Iterator[tuple[int, str]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ALIAS_READ_ROWS):
        yield from zip(batch.column("row").to_pylist(), batch.column("alias").to_pylist())


def attach_aliases(table_path: Path, pairs: Iterator[tuple[int, str]], out_path: Path, scratch: Path) -> None:
    """Rewrite ``table_path`` to ``out_path`` one row group at a time with its ``aliases`` column
    taken from ``pairs`` (ordered by row), ``;``-joined; ``table_path`` is moved into ``scratch``."""
    source = scratch / "rows.parquet"
    os.replace(table_path, source)
    pairs = iter(pairs)
    pending = next(pairs, None)
    parquet = pq.ParquetFile(source)
    start = 0
    with pq.ParquetWriter(out_path, parquet.schema_arrow) as writer:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group)
            end = start + table.num_rows
            cells: dict[int, list[str]] = {}
            while pending is not None and pending[0] < end:
                cells.setdefault(pending[0] - start, []).append(pending[1])
                pending = next(pairs, None)
            aliases = pa.array([";".join(cells.get(i, ())) for i in range(table.num_rows)], pa.string())
            writer.write_table(table.set_column(table.schema.get_field_index("aliases"), "aliases", aliases))
            start = end
    source.unlink()
