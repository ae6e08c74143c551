"""Embedding one file in several jobs: shards of its records, gathered back into FASTA order."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protkit.embed.embedder import Embedder, EmbedError
from protkit.embed.parts import DESCRIPTION_COLUMN
from protkit.embed.run import embed_fasta
from protkit.io.metadata import read_protkit_metadata, write_parquet
from protkit.io.outputs import claim_outputs

SHARED_KEYS = (
    "model_fingerprint", "quantization", "precision", "backend", "poolings", "dim", "store_dtype", "max_length",
    "overlength", "alphabet", "input", "input_sha256",
)


def shard_path(out_dir: str | Path, index: int, count: int) -> Path:
    """The file of shard ``index`` of ``count`` in ``out_dir``."""
    return Path(out_dir) / f"shard-{index}-of-{count}.parquet"


def embed_shard(
    embedder: Embedder, fasta: str | Path, out_dir: str | Path, index: int, count: int, **options
) -> Path:
    """Embed shard ``index`` of ``count`` into ``out_dir/shard-{index}-of-{count}.parquet``."""
    return embed_fasta(embedder, fasta, shard_path(out_dir, index, count), shard=(index, count), **options)


def gather_shards(shard_paths: Sequence[str | Path], out_parquet: str | Path) -> Path:
    """Concatenate a complete set of shard files in FASTA order into ``out_parquet`` (atomically)."""
    if not shard_paths:
        raise EmbedError("gather_shards: no shard files given")
    with claim_outputs([out_parquet], inputs=shard_paths):
        return _gather(shard_paths, out_parquet)


def with_descriptions(tables: list[pa.Table]) -> list[pa.Table]:
    """Shard tables with a ``description`` column (after ``id``, null) where another shard has one:
    a shard whose records have no header descriptions writes none."""
    if not any(DESCRIPTION_COLUMN in t.column_names for t in tables):
        return tables
    return [t if DESCRIPTION_COLUMN in t.column_names
            else t.add_column(1, DESCRIPTION_COLUMN, pa.nulls(len(t), pa.string())) for t in tables]


def _gather(shard_paths: Sequence[str | Path], out_parquet: str | Path) -> Path:
    tables = [pq.read_table(p) for p in shard_paths]
    metas = [read_protkit_metadata(p) for p in shard_paths]
    first = metas[0]
    for path, meta in zip(shard_paths, metas):
        if "shard" not in meta:
            raise EmbedError(f"{path}: not a shard file (no shard in its metadata)")
        differ = [k for k in SHARED_KEYS if meta.get(k) != first.get(k)]
        if differ:
            raise EmbedError(
                f"{path} differs from {shard_paths[0]} in {', '.join(differ)}; re-run the embedding shards"
            )
    count = first["shard"][1]
    found = sorted(m["shard"][0] for m in metas)
    if found != list(range(count)) or any(m["shard"][1] != count for m in metas):
        raise EmbedError(f"gather_shards: expected shards 0..{count - 1} of {count} once each, got {found}")
    table = pa.concat_tables(with_descriptions(tables))
    table = table.take(pc.sort_indices(table, [("index", "ascending")])).drop_columns(["index"])
    meta = {k: v for k, v in first.items() if k != "shard"}
    for key in ("n_records", "n_rows", "n_unique", "n_truncated"):
        meta[key] = sum(m[key] for m in metas)
    for key in ("dropped", "rejected"):
        meta[key] = sorted((d for m in metas for d in m.get(key, [])), key=lambda d: d["line"])
    meta["shards"] = count
    write_parquet(table, meta, out_parquet)
    return Path(out_parquet)
