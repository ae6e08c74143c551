"""Pooled vectors of an embeddings parquet file (``protkit embed``), ready for search.

:func:`read_embeddings` reads the ids, one pooling's vectors (L2-normalised, so inner product is
cosine), the header descriptions (files that have them) and the ``protkit`` metadata;
:func:`model_identity` is what must match between an index and its queries (model weights,
quantization, pooling, width, space). Errors name the file and
what to do: :class:`SearchError` is a user-facing ``protkit: error:``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protkit.io.metadata import FileFormatError, read_protkit_metadata
from protkit.search.hygiene import column_rows, describe_rows

log = logging.getLogger(__name__)

# Must match between an index and its queries. Quantization may differ: int8 vectors of a model
# stay within ~1e-3 cosine of its fp32 vectors, so an fp32 index answers int8 queries.
IDENTITY_KEYS = ("model_fingerprint", "pooling", "dim", "space")
DESCRIPTION = "description"  # the embeddings column of header descriptions (protkit.embed.parts writes it)


class SearchError(FileFormatError):
    """A user-facing problem with an embeddings, index, codes or query file; the message says what to do."""


@dataclass
class Embeddings:
    """One pooling's vectors of an embeddings file, in file order."""

    path: Path
    ids: list[str]
    vectors: np.ndarray  # (N, D) float32, unit rows (zero rows stay zero)
    lengths: np.ndarray | None  # (N,) residues, when the file has them
    pooling: str
    meta: dict  # the file's protkit metadata
    skipped: list[dict] = field(default_factory=list)  # rows left out as unusable: {"id", "reason"}
    descriptions: list[str | None] | None = None  # FASTA header text after the id; None: the file has none

    @property
    def identity(self) -> dict:
        return model_identity(self.meta, self.pooling)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Float32 rows scaled to unit length; all-zero rows stay zero."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def default_pooling(meta: dict, path: str | Path) -> str:
    """``mean`` when the file has it, else its first pooling."""
    poolings = meta.get("poolings") or []
    if not poolings:
        raise SearchError(f"{path}: no pooled vectors listed in its metadata (poolings)")
    return "mean" if "mean" in poolings else poolings[0]


def read_embeddings(path: str | Path, pooling: str | None = None, skip_bad: bool = False) -> Embeddings:
    """Ids, normalised ``pooling`` vectors (default: :func:`default_pooling`) and metadata of ``path``.

    Unusable rows (NaN, inf, all zero, missing, another width: :mod:`protkit.search.hygiene`) are
    refused with a SearchError naming the first ids, or, with ``skip_bad``, left out and listed in
    ``skipped``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file {path}: no such file")
    meta = read_protkit_metadata(path)
    pooling = pooling or default_pooling(meta, path)
    if pooling not in (meta.get("poolings") or []):
        raise SearchError(f"{path}: no '{pooling}' vectors (it has {', '.join(meta.get('poolings') or []) or 'none'}); "
                          f"re-embed with --pooling {pooling} or choose another --pooling")
    present = pq.read_schema(path).names
    columns = ["id", pooling] + [name for name in ("length", DESCRIPTION) if name in present]
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise SearchError(f"{path}: cannot read columns {', '.join(columns)} ({err})") from err
    ids = table.column("id").to_pylist()
    dim = meta.get("dim") if isinstance(meta.get("dim"), int) else None
    vectors, bad = column_rows(table.column(pooling), dim)  # (N, D) float32
    lengths = table.column("length").to_numpy() if "length" in columns else None
    descriptions = table.column(DESCRIPTION).to_pylist() if DESCRIPTION in columns else None
    skipped = []
    if bad and not skip_bad:
        raise SearchError(f"{path}: unusable {pooling} vectors in {describe_rows(bad, ids)}; re-embed those proteins, "
                          "or pass --skip-bad-vectors to leave them out (listed in the output's metadata)")
    if bad:
        log.warning("%s: leaving out unusable %s vectors, %s", path, pooling, describe_rows(bad, ids))
        keep = np.setdiff1d(np.arange(len(ids)), np.fromiter(bad, np.int64))
        skipped = [{"id": ids[row], "reason": reason} for row, reason in bad.items()]
        ids, vectors = [ids[i] for i in keep], vectors[keep]
        lengths = lengths[keep] if lengths is not None else None
        descriptions = [descriptions[i] for i in keep] if descriptions is not None else None
    return Embeddings(path, ids, normalise(vectors), lengths, pooling, meta, skipped, descriptions)


def model_identity(meta: dict, pooling: str) -> dict:
    """Weights, quantization, pooling, width and space of a vector set (IDENTITY_KEYS must match)."""
    return {
        "model_fingerprint": meta.get("model_fingerprint"),
        "quantization": meta.get("quantization"),
        "pooling": pooling,
        "dim": meta.get("dim"),
        "space": meta.get("space"),
    }


def describe_identity(identity: dict) -> str:
    """``model 1a2b3c4d5e6f (int8_dynamic), mean pooling, 960-d`` for messages."""
    fingerprint = str(identity.get("model_fingerprint"))[:12]
    quantization = identity.get("quantization") or "fp32"
    return f"model {fingerprint} ({quantization}), {identity.get('pooling')} pooling, {identity.get('dim')}-d"


def check_same_model(expected: dict, got: dict, expected_source: str, got_source: str) -> None:
    """SearchError naming both fingerprints when ``got`` was not embedded as ``expected`` was."""
    differs = [k for k in IDENTITY_KEYS if expected.get(k) != got.get(k)]
    if differs:
        raise SearchError(
            f"{got_source} was embedded with {describe_identity(got)} but {expected_source} with "
            f"{describe_identity(expected)} (differs in {', '.join(differs)}); embed both with the same model and "
            "pooling"
        )
