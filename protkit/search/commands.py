"""File to file: index, dedup, cluster and hash an embeddings file. The ``protkit`` commands and the
pipeline's rules call these same functions (``search`` is :func:`protkit.search.query.search`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

import protkit
from protkit.io.metadata import write_parquet
from protkit.search.clusters import dedup, kmeans_clusters, threshold_clusters
from protkit.search.codes import Codes, hash_embeddings
from protkit.search.index import VectorIndex, build_index
from protkit.search.vectors import Embeddings, SearchError, read_embeddings


def index_file(embeddings: str | Path, output: str | Path, pooling: str | None = None,
               kind: str = "auto") -> VectorIndex:
    """``protkit index``: the ``pooling`` vectors of ``embeddings`` into the index directory ``output``."""
    return build_index(read_embeddings(embeddings, pooling), output, kind)


def hash_file(embeddings: str | Path, output: str | Path, bits: int = 256, seed: int = 0, method: str = "auto",
              pooling: str | None = None) -> Codes:
    """``protkit hash``: LSH codes of the ``pooling`` vectors of ``embeddings`` into ``output``."""
    return hash_embeddings(read_embeddings(embeddings, pooling), bits, output, seed, method)


def dedup_file(embeddings: str | Path, output: str | Path, threshold: float = 0.99,
               pooling: str | None = None) -> pd.DataFrame:
    """``protkit dedup``: near-duplicate groups (``id``, ``representative``, ``score``) into ``output``."""
    vectors = read_embeddings(embeddings, pooling)
    table = dedup(vectors, threshold)
    _write_groups(table, vectors, output, {"kind": "dedup", "threshold": threshold, "k": None})
    return table


def cluster_file(embeddings: str | Path, output: str | Path, *, k: int | None = None, threshold: float | None = None,
                 seed: int = 0, pooling: str | None = None) -> pd.DataFrame:
    """``protkit cluster``: spherical k-means (``k``) or threshold components (``threshold``) into
    ``output`` (``id``, ``cluster``, ``representative``, ``score``)."""
    if (k is None) == (threshold is None):
        given = "both" if k is not None else "neither"
        raise SearchError(f"{output}: give one of k (k-means) and threshold (components), not {given}")
    vectors = read_embeddings(embeddings, pooling)
    if k is not None:
        table, kind = kmeans_clusters(vectors, k, seed), "kmeans"
    else:
        table, kind = threshold_clusters(vectors, threshold), "threshold_components"
    _write_groups(table, vectors, output, {"kind": kind, "threshold": threshold, "k": k})
    return table


def _write_groups(table: pd.DataFrame, embeddings: Embeddings, output: str | Path, settings: dict) -> None:
    """A groups table as parquet with plain ``string`` id columns (as hits files have) and metadata
    saying what made it."""
    columns = {name: pa.array(table[name].tolist(), pa.string()) if name in ("id", "representative")
               else pa.array(table[name].to_numpy()) for name in table.columns}
    meta = {**settings, "embeddings": str(Path(embeddings.path).resolve()), "identity": embeddings.identity,
            "protkit_version": protkit.__version__}
    write_parquet(pa.table(columns), meta, output)
