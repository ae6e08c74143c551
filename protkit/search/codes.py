"""LSH code files (``protkit hash``): one packed binary code per protein, searchable by Hamming distance.

A codes file is parquet with ``id`` and ``code`` (``fixed_size_binary(bits / 8)``) and ``protkit``
metadata holding the :class:`~protkit.search.lsh.Hasher` (seed, width, centre), the model identity and the
embeddings file the codes came from, whose float vectors re-rank Hamming candidates in search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protkit.io.metadata import read_protkit_metadata, write_parquet
from protkit.search.lsh import Hasher, fit_hasher
from protkit.search.model_record import model_record
from protkit.search.vectors import Embeddings, SearchError
from protkit.version import VERSION

KIND = "lsh_codes"


@dataclass
class Codes:
    """Codes of a codes file, in its row order."""

    path: Path
    ids: list[str]
    codes: np.ndarray  # (N, bits // 8) uint8
    hasher: Hasher
    meta: dict

    @property
    def identity(self) -> dict:
        return self.meta["identity"]


def is_codes_file(path: str | Path) -> bool:
    """Whether ``path`` is a codes parquet file (not an index directory)."""
    path = Path(path)
    return path.is_file() and read_protkit_metadata(path).get("kind") == KIND


def hash_embeddings(embeddings: Embeddings, bits: int, output: str | Path, seed: int = 0,
                    method: str = "auto") -> Codes:
    """Fit a hasher on ``embeddings`` (centre = their mean), encode them and write ``output``."""
    if not embeddings.ids:
        raise SearchError(f"{embeddings.path}: no vectors to hash")
    try:
        hasher = fit_hasher(embeddings.vectors, bits, seed, method)
    except ValueError as err:
        raise SearchError(f"{embeddings.path}: {err}") from err
    codes = hasher.encode(embeddings.vectors)  # (N, bits // 8)
    meta = {
        "kind": KIND,
        "hasher": hasher.to_meta(),
        "bits": bits,
        "method": hasher.method,
        "n": len(embeddings.ids),
        "pooling": embeddings.pooling,
        "skipped": embeddings.skipped,
        "identity": embeddings.identity,
        "embeddings": str(Path(embeddings.path).resolve()),
        "model": model_record(embeddings.meta, Path(output).parent),
        "protkit_version": VERSION,
    }
    code_column = pa.array([row.tobytes() for row in codes], pa.binary(bits // 8))
    write_parquet(pa.table({"id": pa.array(embeddings.ids, pa.string()), "code": code_column}), meta, output)
    return Codes(Path(output), embeddings.ids, codes, hasher, meta)


def read_codes(path: str | Path) -> Codes:
    """A codes file written by :func:`hash_embeddings`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codes file {path}: no such file")
    meta = read_protkit_metadata(path)
    if meta.get("kind") != KIND:
        raise SearchError(f"{path}: not a codes file (write one with protkit hash)")
    try:
        table = pq.read_table(path, columns=["id", "code"])
    except (pa.ArrowException, OSError, KeyError) as err:
        raise SearchError(f"{path}: cannot read id and code columns ({err})") from err
    width = meta["bits"] // 8
    raw = table.column("code").combine_chunks()
    codes = np.frombuffer(raw.buffers()[1], np.uint8, count=len(table) * width, offset=raw.offset * width)
    return Codes(path, table.column("id").to_pylist(), codes.reshape(len(table), width).copy(),
                 Hasher.from_meta(meta["hasher"]), meta)
