"""Shard files of a teacher cache: which are done, and writing them (each atomically).

A shard is done when its files carry this build's fingerprint and the digest of its rows of the
sequences table; a rerun keeps done shards and recomputes the others (:func:`prepare_directory`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import torch

from protkit.io.atomic import atomic_path
from protkit.io.columns import vector_column
from protkit.io.metadata import metadata_entry, read_protkit_metadata, write_parquet
from protkit.teacher.layout import TENSOR_KINDS, check_fingerprint, pooled_name, start_build, tensor_name

log = logging.getLogger(__name__)

Columns = tuple[list[str], list[str], list[str]]  # ids, sequences, splits of the sequences table


def rows_digest(ids: list[str], seqs: list[str], splits: list[str], rows: Iterable[int]) -> str:
    """sha256 over the id, sequence and split of each of ``rows``: what a shard was built from."""
    digest = hashlib.sha256()
    for i in rows:
        digest.update(f"{ids[i]}\t{seqs[i]}\t{splits[i]}\n".encode("utf-8"))
    return digest.hexdigest()


def shard_metadata(fingerprint: str, rows_sha256: str) -> dict[str, str]:
    """The ``protkit`` metadata of a shard file."""
    return {"fingerprint": fingerprint, "rows_sha256": rows_sha256}


def shard_file_metadata(path: Path) -> dict | None:
    """protkit metadata (fingerprint, rows_sha256) of a shard file; None if missing or unreadable,
    ``{}`` (a foreign file, refused by its fingerprint) when it has none."""
    if not path.exists():
        return None
    try:
        return read_protkit_metadata(path, required=False)
    except Exception as exc:  # a damaged file is recomputed, not trusted
        log.warning("%s is unreadable (%s); recomputing it", path, exc)
        return None


def shard_done(out_dir: Path, shard: int, fingerprint: str, digest: str, kinds: Sequence[str]) -> bool:
    """True if the pooled file and the per-residue files of ``kinds`` (:func:`~protkit.teacher.layout.tensor_kinds`)
    exist for this fingerprint and these rows; raises on a foreign fingerprint."""
    names = [pooled_name(shard)] + [tensor_name(kind, shard) for kind in kinds]
    for name in names:
        meta = shard_file_metadata(out_dir / name)
        if meta is None:
            return False
        check_fingerprint(out_dir, out_dir / name, meta.get("fingerprint"), fingerprint)
        if meta.get("rows_sha256") != digest:
            log.info("%s: rows of the sequences table changed; recomputing shard %d", out_dir, shard)
            return False
    return True


def _extra_shards(out_dir: Path, n_shards: int, fingerprint: str) -> list[Path]:
    """Shard files numbered beyond the current table (it shrank); raises on a foreign fingerprint."""
    expected = {pooled_name(k) for k in range(n_shards)}
    expected |= {tensor_name(kind, k) for kind in TENSOR_KINDS for k in range(n_shards)}
    found = [*out_dir.glob("pooled-*.parquet")]
    found += [p for kind in TENSOR_KINDS for p in out_dir.glob(f"{kind}-*.safetensors")]
    extra = [p for p in sorted(found) if p.name not in expected]
    for path in extra:
        meta = shard_file_metadata(path)
        if meta is not None:
            check_fingerprint(out_dir, path, meta.get("fingerprint"), fingerprint)
    return extra


def prepare_directory(
    out_dir: Path, fingerprint: str, parts: dict, columns: Columns, shard_size: int, kinds: Sequence[str],
) -> tuple[list[range], list[str], list[bool]]:
    """Shard rows, their digests and which shards ``out_dir`` already holds (with the per-residue files
    of ``kinds``), for the table ``columns = (ids, sequences, splits)``; then marks the build started
    and removes shard files numbered beyond the table. Raises on a foreign fingerprint before touching
    anything."""
    ids, seqs, splits = columns
    n_shards = math.ceil(len(ids) / shard_size)
    shard_rows = [range(k * shard_size, min((k + 1) * shard_size, len(ids))) for k in range(n_shards)]
    digests = [rows_digest(ids, seqs, splits, rows) for rows in shard_rows]
    done = [shard_done(out_dir, k, fingerprint, digests[k], kinds) for k in range(n_shards)]
    extra = _extra_shards(out_dir, n_shards, fingerprint)
    start_build(out_dir, fingerprint, parts)
    for path in extra:
        log.info("removing %s: the sequences table no longer has that shard", path)
        path.unlink()
    return shard_rows, digests, done


def write_pooled(
    path: Path, ids: list[str], splits: list[str], pooled: dict[str, np.ndarray], store_dtype: str, meta: dict,
) -> None:
    """A pooled shard: ``id``, ``split`` and one fixed-size-list column per pooling (``(n, D)`` each)."""
    columns = {"id": pa.array(ids, pa.string()), "split": pa.array(splits, pa.string())}
    for name, vectors in pooled.items():  # (n, D)
        columns[name] = vector_column(vectors, store_dtype)
    write_parquet(pa.table(columns), meta, path)


def write_tensors(path: Path, named: dict[str, torch.Tensor], meta: dict) -> None:
    """A per-residue shard: one ``(L_i, D)`` tensor per key (:func:`~protkit.teacher.layout.tensor_keys`)."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({key: t.contiguous() for key, t in named.items()}, str(tmp), metadata=metadata_entry(meta))
