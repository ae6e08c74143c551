"""File to file: index, dedup, cluster and hash an embeddings file. The ``protkit`` commands and the
pipeline's rules call these same functions (``search`` is :func:`protkit.search.query.search`).

Each follows the output policy (:func:`protkit.io.outputs.claim_outputs`: never over an input, one
writer at a time) and reads vectors through :func:`~protkit.search.vectors.read_embeddings`, which
refuses unusable rows unless ``skip_bad`` (then they are left out and listed in the output's
metadata). FAISS and numpy failures end in a :class:`~protkit.search.vectors.SearchError` naming the
file, never a traceback. Each logs one INFO line when it is done (``dedup: 1,678 proteins -> 1,327
groups, largest 11 (cosine >= 0.99): groups.parquet``)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from protkit.io.metadata import write_parquet
from protkit.io.outputs import claim_outputs
from protkit.search.clusters import dedup, kmeans_clusters, threshold_clusters
from protkit.search.codes import Codes, hash_embeddings
from protkit.search.index import VectorIndex, build_index
from protkit.search.vectors import DESCRIPTION, Embeddings, SearchError, read_embeddings
from protkit.version import VERSION

log = logging.getLogger(__name__)


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
        vectors = read_embeddings(embeddings, pooling, skip_bad)
        index = build_index(vectors, output, kind)
    log.info("index: %s (%s, %d-d, %s): %s", proteins(vectors), vectors.pooling, vectors.vectors.shape[1],
             index.meta["kind"], output)
    return index


def hash_file(embeddings: str | Path, output: str | Path, bits: int = 256, seed: int = 0, method: str = "auto",
              pooling: str | None = None, skip_bad: bool = False) -> Codes:
    """``protkit hash``: LSH codes of the ``pooling`` vectors of ``embeddings`` into ``output``."""
    with claim_outputs([output], inputs=[embeddings]), _library_errors(embeddings, "hashing"):
        vectors = read_embeddings(embeddings, pooling, skip_bad)
        codes = hash_embeddings(vectors, bits, output, seed, method)
    log.info("hash: %s -> %d-bit codes (%s planes, %s pooling): %s", proteins(vectors), bits, codes.hasher.method,
             vectors.pooling, output)
    return codes


def dedup_file(embeddings: str | Path, output: str | Path, threshold: float = 0.99, pooling: str | None = None,
               skip_bad: bool = False) -> pd.DataFrame:
    """``protkit dedup``: near-duplicate groups (``id``, ``representative``, ``score``) into ``output``."""
    with claim_outputs([output], inputs=[embeddings]), _library_errors(embeddings, "finding near-duplicates"):
        vectors = read_embeddings(embeddings, pooling, skip_bad)
        table = dedup(vectors, threshold)
        _write_groups(table, vectors, output, {"kind": "dedup", "threshold": threshold, "k": None})
    log.info("dedup: %s -> %s (cosine >= %s): %s", proteins(vectors), groups(table["representative"], "groups"),
             threshold, output)
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
    how = f"k-means, k {k}" if k is not None else f"components of cosine >= {threshold}"
    log.info("cluster: %s -> %s (%s): %s", proteins(vectors), groups(table["cluster"], "clusters"), how, output)
    return table


def proteins(embeddings: Embeddings) -> str:
    """``1,678 proteins`` (and how many unusable vectors were left out) for the summary lines."""
    skipped = f" ({len(embeddings.skipped):,} unusable left out)" if embeddings.skipped else ""
    return f"{len(embeddings.ids):,} proteins{skipped}"


def groups(labels: pd.Series, what: str) -> str:
    """``1,327 groups, largest 11`` of a column of group labels."""
    sizes = labels.value_counts()
    return f"{len(sizes):,} {what}, largest {int(sizes.max()) if len(sizes) else 0:,}"


def _write_groups(table: pd.DataFrame, embeddings: Embeddings, output: str | Path, settings: dict) -> None:
    """A groups table as parquet with plain ``string`` id (and description) columns, as hits files
    have, and metadata saying what made it."""
    columns = {name: pa.array(table[name].tolist(), pa.string(), from_pandas=True)
               if name in ("id", "representative", DESCRIPTION) else pa.array(table[name].to_numpy())
               for name in table.columns}
    meta = {**settings, "embeddings": str(Path(embeddings.path).resolve()), "identity": embeddings.identity,
            "skipped": embeddings.skipped, "protkit_version": VERSION}
    write_parquet(pa.table(columns), meta, output)
