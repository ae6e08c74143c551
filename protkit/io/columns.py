"""Vectors as parquet columns: fixed-size lists of float32 or float16, one list per row.

The one rule for how protkit stores vectors in parquet (teacher-cache shards, embeddings files):
:func:`vector_column` writes it, :func:`column_vectors` reads it back.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

STORE_DTYPES: dict[str, tuple[pa.DataType, type]] = {
    "fp32": (pa.float32(), np.float32),
    "fp16": (pa.float16(), np.float16),
}


def vector_column(vectors: np.ndarray, store_dtype: str) -> pa.FixedSizeListArray:
    """(N, D) vectors -> a fixed-size-list column of float32/float16 (``store_dtype``)."""
    arrow_type, numpy_type = STORE_DTYPES[store_dtype]
    flat = pa.array(vectors.astype(numpy_type).reshape(-1), type=arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def column_vectors(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """A column of vectors -> ``(N, dim)`` array in the stored dtype (``dim=None``: the width the
    rows have; the column must not be empty then)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, dim) if dim is not None else flat.reshape(len(column), -1)
