"""``protkit search``: the k nearest proteins of each query in an index or a codes file.

Queries are an embeddings parquet file or a FASTA file, which is embedded first with ``--model``
(default: the model recorded in the index, found by :mod:`protkit.search.model_record`). The queries
must come from the model and pooling the index was built with
(:func:`protkit.search.vectors.check_same_model`). Output: parquet with ``query_id``, ``hit_id``,
``rank`` (1-based), ``score`` (cosine), then ``query_description`` and ``hit_description`` (the
header text after the id, null where a header has none) when the queries / the index carry
descriptions; queries in input order and hits best first. A hit with the query's own id is left out
unless ``keep_self`` (all-against-all runs).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from protkit.io.metadata import write_parquet
from protkit.io.outputs import claim_outputs
from protkit.io.progress import progress_bar
from protkit.search.codes import Codes, is_codes_file, read_codes
from protkit.search.index import load_index
from protkit.search.lsh import CANDIDATE_FACTOR, lsh_search
from protkit.search.model_record import load_query_model
from protkit.search.vectors import Embeddings, SearchError, check_same_model, read_embeddings
from protkit.sequences.fasta import is_gzip
from protkit.version import VERSION

log = logging.getLogger(__name__)
QUERY_BLOCK = 8192  # queries searched at once
HIT_COLUMNS = ("query_id", "hit_id", "rank", "score")
DESCRIPTION_COLUMNS = ("query_description", "hit_description")  # when the queries / the target have them


class Target(Protocol):
    """What search needs of an index or a codes file."""

    path: Path
    ids: list[str]
    meta: dict
    descriptions: list[str | None] | None

    @property
    def identity(self) -> dict: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class CodeTarget:
    """A codes file searched by Hamming distance, candidates re-ranked by float vectors when at hand."""

    codes: Codes
    vectors: np.ndarray | None  # (N, D) the embeddings the codes came from
    candidate_factor: int = CANDIDATE_FACTOR
    descriptions: list[str | None] | None = None  # of those embeddings, when they have them

    @property
    def path(self) -> Path:
        return self.codes.path

    @property
    def ids(self) -> list[str]:
        return self.codes.ids

    @property
    def meta(self) -> dict:
        return self.codes.meta

    @property
    def identity(self) -> dict:
        return self.codes.identity

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self.ids)))
        return lsh_search(self.codes.hasher, self.codes.codes, queries, k, self.vectors, self.candidate_factor)


def open_target(path: str | Path, rerank_vectors: str | Path | None = None, skip_bad: bool = False) -> Target:
    """An index directory, or a codes file with the float vectors to re-rank by (``rerank_vectors``,
    else the embeddings file recorded in it, when it is still there with the same ids)."""
    path = Path(path)
    if not path.is_file():
        return load_index(path)
    if not is_codes_file(path):
        raise SearchError(f"{path}: neither an index directory (protkit index) nor a codes file (protkit hash)")
    codes = read_codes(path)
    source = Path(rerank_vectors) if rerank_vectors else Path(codes.meta["embeddings"])
    if not source.is_file():
        if rerank_vectors:
            raise FileNotFoundError(f"embeddings file {source}: no such file")
        log.warning("%s: its embeddings file %s is gone; ranking by Hamming distance alone", path, source)
        return CodeTarget(codes, None)
    embeddings = read_embeddings(source, codes.meta["pooling"], skip_bad)
    if embeddings.ids != codes.ids:
        raise SearchError(f"{source} does not hold the proteins of {path} in the same order; pass the embeddings "
                          "file the codes were made from")
    check_same_model(codes.identity, embeddings.identity, str(path), str(source))
    return CodeTarget(codes, embeddings.vectors, descriptions=embeddings.descriptions)


def looks_like_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def query_embeddings(query: str | Path, target: Target, model: str | None, int8: bool | None, skip_bad: bool = False,
                     **embed_options) -> Embeddings:
    """The queries as vectors in the target's pooling: read from parquet, or embedded from FASTA."""
    query = Path(query)
    pooling = target.identity["pooling"]
    if not query.is_file():
        raise FileNotFoundError(f"query file {query}: no such file")
    if not is_gzip(query) and looks_like_parquet(query):
        return read_embeddings(query, pooling, skip_bad)
    from protkit.embed.run import embed_fasta

    loading = {k: v for k, v in embed_options.items() if k in ("device", "backend", "precision")}
    embedder = load_query_model(target.path, target.meta.get("model") or {}, target.identity.get("model_fingerprint"),
                                query, model, int8, poolings=[pooling], **loading)
    with tempfile.TemporaryDirectory(prefix="protkit-search-") as tmp:
        out = Path(tmp) / "queries.parquet"
        embed_fasta(embedder, query, out, poolings=[pooling], resume=False,
                    **{k: v for k, v in embed_options.items() if k in ("max_tokens", "overlength", "alphabet")})
        embeddings = read_embeddings(out, pooling, skip_bad)
    embeddings.path = query
    return embeddings


def search_vectors(
    target: Target, queries: Embeddings, k: int, min_score: float | None = None, keep_self: bool = False
) -> pd.DataFrame:
    """Hits of every query, in query order, best first: the :data:`HIT_COLUMNS` table, then the
    :data:`DESCRIPTION_COLUMNS` the queries and the target have."""
    if k < 1:
        raise SearchError(f"--k must be at least 1, got {k}")
    check_same_model(target.identity, queries.identity, str(target.path), str(queries.path))
    ids = np.asarray(target.ids, dtype=object)
    query_descriptions = None if queries.descriptions is None else np.asarray(queries.descriptions, dtype=object)
    hit_descriptions = None if target.descriptions is None else np.asarray(target.descriptions, dtype=object)
    known = (query_descriptions is not None, hit_descriptions is not None)
    columns = list(HIT_COLUMNS) + [name for name, have in zip(DESCRIPTION_COLUMNS, known) if have]
    extra = 0 if keep_self else 1  # one more, for the query itself
    frames = []
    blocks = range(0, len(queries.ids), QUERY_BLOCK)
    for start in progress_bar(blocks, total=len(blocks), desc="search", unit="block",
                              disable=len(queries.ids) <= QUERY_BLOCK):
        query_ids = np.asarray(queries.ids[start:start + QUERY_BLOCK], dtype=object)
        scores, indices = target.search(queries.vectors[start:start + QUERY_BLOCK], k + extra)  # (b, k')
        keep = indices >= 0
        if not keep_self:
            keep &= ids[np.maximum(indices, 0)] != query_ids[:, None]
        if min_score is not None:
            keep &= scores >= min_score
        ranks = np.cumsum(keep, axis=1)
        keep &= ranks <= k
        rows, cols = np.nonzero(keep)
        frame = pd.DataFrame({
            "query_id": query_ids[rows], "hit_id": ids[indices[rows, cols]],
            "rank": ranks[rows, cols].astype(np.int32), "score": scores[rows, cols].astype(np.float32),
        })
        if query_descriptions is not None:
            frame["query_description"] = query_descriptions[start + rows]
        if hit_descriptions is not None:
            frame["hit_description"] = hit_descriptions[indices[rows, cols]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def write_hits(hits: pd.DataFrame, output: str | Path, target: Target, queries: Embeddings, settings: dict) -> None:
    table = pa.table({
        "query_id": pa.array(hits["query_id"].tolist(), pa.string()),
        "hit_id": pa.array(hits["hit_id"].tolist(), pa.string()),
        "rank": pa.array(hits["rank"].to_numpy(np.int32)),
        "score": pa.array(hits["score"].to_numpy(np.float32)),
        **{name: pa.array(hits[name].tolist(), pa.string(), from_pandas=True)
           for name in DESCRIPTION_COLUMNS if name in hits},
    })
    meta = {"kind": "search_hits", "target": str(target.path), "queries": str(queries.path),
            "n_queries": len(queries.ids), "skipped_queries": queries.skipped, "identity": target.identity, **settings,
            "protkit_version": VERSION}
    write_parquet(table, meta, output)


def search(
    target_path: str | Path,
    query: str | Path,
    output: str | Path,
    k: int = 10,
    *,
    model: str | None = None,
    int8: bool | None = None,
    min_score: float | None = None,
    keep_self: bool = False,
    rerank_vectors: str | Path | None = None,
    skip_bad: bool = False,
    **embed_options,
) -> pd.DataFrame:
    """Search ``query`` (embeddings parquet or FASTA) against ``target_path`` and write ``output``
    (never over an input: :func:`protkit.io.outputs.claim_outputs`). ``skip_bad``: leave unusable
    query vectors out (listed in the metadata) instead of refusing them."""
    with claim_outputs([output], inputs=[target_path, query, rerank_vectors]):
        target = open_target(target_path, rerank_vectors, skip_bad)
        queries = query_embeddings(query, target, model, int8, skip_bad, **embed_options)
        try:
            hits = search_vectors(target, queries, k, min_score, keep_self)
        except RuntimeError as err:  # FAISS
            raise SearchError(f"{target.path}: search failed ({str(err).strip().splitlines()[0]})") from None
        write_hits(hits, output, target, queries, {"k": k, "min_score": min_score, "keep_self": keep_self})
    log.info("search: %s queries -> %s hits against %s proteins (k %d%s): %s", f"{len(queries.ids):,}",
             f"{len(hits):,}", f"{len(target.ids):,}", k, "" if min_score is None else f", cosine >= {min_score}",
             output)
    return hits
