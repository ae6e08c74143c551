"""File to file: index, dedup, cluster and hash an embeddings file. The ``protkit`` commands and the
pipeline's rules call these same functions (``search`` is :func:`protkit.search.query.search`).

Each follows the output policy (:func:`protkit.io.outputs.claim_outputs`: never over an input, one
writer at a time) and reads vectors through :func:`~protkit.search.vectors.read_embeddings`, which
refuses unusable rows unless ``skip_bad`` (then they are left out and listed in the output's
metadata). FAISS and numpy failures end in a :class:`~protkit.search.vectors.SearchError` naming the
file, never a traceback."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

import protkit
from protkit.io.metadata import write_parquet
from protkit.io.outputs import claim_outputs
from protkit.search.clusters import dedup, kmeans_clusters, threshold_clusters
from protkit.search.codes import Codes, hash_embeddings
from protkit.search.index import VectorIndex, build_index
from protkit.search.vectors import Embeddings, SearchError, read_embeddings


@contextlib.contextmanager
def _library_errors(path: str | Path, what: str) -> Iterator[None]:
    """FAISS's RuntimeError and numpy's LinAlgError as a SearchError naming ``path``."""
    try:
        yield
    except (RuntimeError, np.linalg.LinAlgError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SearchError(f"{path}: {what} failed ({first})") from None


def index_file(embeddings: str | Path, output: str | Path, pooling: str | None = None, kind: str = "auto",
               skip_bad: bool = False) -> VectorIndex:
    """``protkit index``: the ``pooling`` vectors of ``embeddings`` into the index directory ``output``."""
    with claim_outputs(directories=[output], inputs=[embeddings]), _library_errors(embeddings, "indexing"):
        return build_index(read_embeddings(embeddings, pooling, skip_bad), output, kind)


def hash_file(embeddings: str | Path, output: str | Path, bits: int = 256, seed: int = 0, method: str = "auto",
              pooling: str | None = None, skip_bad: bool = False) -> Codes:
    """``protkit hash``: LSH codes of the ``pooling`` vectors of ``embeddings`` into ``output``."""
    with claim_outputs([output], inputs=[embeddings]), _library_errors(embeddings, "hashing"):
        return hash_embeddings(read_embeddings(embeddings, pooling, skip_bad), bits, output, seed, method)


def dedup_file(embeddings: str | Path, output: str | Path, threshold: float = 0.99, pooling: str | None = None,
               skip_bad: bool = False) -> pd.DataFrame:
    """``protkit dedup``: near-duplicate groups (``id``, ``representative``, ``score``) into ``output``."""
    with claim_outputs([output], inputs=[embeddings]), _library_errors(embeddings, "finding near-duplicates"):
        vectors = read_embeddings(embeddings, pooling, skip_bad)
        table = dedup(vectors, threshold)
        _write_groups(table, vectors, output, {"kind": "dedup", "threshold": threshold, "k": None})
    return table


def cluster_file(embeddings: str | Path, output: str | Path, *, k: int | None = None, threshold: float | None = None,
                 seed: int = 0, pooling: str | None = None, skip_bad: bool = False) -> pd.DataFrame:
    """``protkit cluster``: spherical k-means (``k``) or threshold components (``threshold``) into
    ``output`` (``id``, ``cluster``, ``representative``, ``score``)."""
    if (k is None) == (threshold is None):
        given = "both" if k is not None else "neither"
        raise SearchError(f"{output}: give one of k (k-means) and threshold (components), not {given}")
    with claim_outputs([output], inputs=[embeddings]), _library_errors(embeddings, "clustering"):
        vectors = read_embeddings(embeddings, pooling, skip_bad)
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
            "skipped": embeddings.skipped, "protkit_version": protkit.__version__}
    write_parquet(pa.table(columns), meta, output)
