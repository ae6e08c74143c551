"""Per-residue embeddings on disk: a parquet file written part by part, read back lazily.

Format (``protkit embed --per-residue FILE``), one row per FASTA record in FASTA order:

- ``id`` (string), ``length`` (int32: residues embedded, i.e. after truncation), ``truncated`` (bool);
- ``residues``: list of fixed-size lists of ``D`` float32 or float16 — one vector per residue, CLS,
  EOS and padding removed (row ``i`` of the list is residue ``i + 1`` of the sequence);
- the ``protkit`` schema metadata of the pooled output (model, fingerprint, settings), with
  ``"per_residue": true`` (read it with :func:`protkit.io.metadata.read_protkit_metadata`).

Each embedding part is a row group, so :func:`read_residues` holds one part's rows at a time, not
the proteome. Any parquet reader works too (pyarrow, polars, DuckDB, Spark).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protkit.io.columns import STORE_DTYPES


def residues_table(
    ids: Sequence[str], truncated: Sequence[bool], arrays: Sequence[np.ndarray], dim: int, store_dtype: str
) -> pa.Table:
    """A table of per-residue vectors (``arrays[i]``: ``(L_i, dim)``) in the format above."""
    arrow_type, numpy_type = STORE_DTYPES[store_dtype]
    lengths = np.asarray([len(a) for a in arrays], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
    flat = np.concatenate([a.astype(numpy_type, copy=False).reshape(-1) for a in arrays]) if len(arrays) else \
        np.empty(0, numpy_type)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=arrow_type), dim)  # (sum L_i, dim)
    return pa.table({
        "id": pa.array(list(ids), type=pa.string()),
        "length": pa.array(lengths, type=pa.int32()),
        "truncated": pa.array(list(truncated), type=pa.bool_()),
        "residues": pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), vectors),
    })


def read_residues(
    path: str | Path, ids: Iterable[str] | None = None, dtype: type = np.float32
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(id, (L, D) array)`` in file order, one row group at a time (``ids``: only these)."""
    wanted = set(ids) if ids is not None else None
    handle = pq.ParquetFile(path)
    dim = handle.schema_arrow.field("residues").type.value_type.list_size
    for group in range(handle.num_row_groups):
        table = handle.read_row_group(group, columns=["id", "residues"])
        column = table.column("residues").combine_chunks()
        offsets = column.offsets.to_numpy()
        values = column.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        for row, rid in enumerate(table.column("id").to_pylist()):
            if wanted is None or rid in wanted:
                yield rid, values[offsets[row] : offsets[row + 1]].astype(dtype, copy=False)
