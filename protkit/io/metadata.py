"""protkit's metadata in the files it writes: one JSON object under the key ``protkit``.

Parquet files (embeddings, per-residue vectors, teacher-cache shards, codes, hits, groups) carry it
as schema key-value metadata, safetensors files (per-residue teacher targets) in their header. This
module is the one writer (:func:`write_parquet`, :func:`protkit_schema`, :func:`metadata_entry`)
and the one reader (:func:`read_protkit_metadata`) of that entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from protkit.io.atomic import atomic_path

METADATA_KEY = "protkit"


class FileFormatError(ValueError):
    """A file that is not what protkit expected (not parquet, no protkit metadata, bad JSON); the
    message names the file."""


def metadata_entry(meta: dict) -> dict[str, str]:
    """``{"protkit": JSON}``: the key-value entry a file carries (sorted keys)."""
    return {METADATA_KEY: json.dumps(meta, sort_keys=True)}


def protkit_schema(schema: pa.Schema, meta: dict) -> pa.Schema:
    """``schema`` with ``meta`` as its (only) key-value metadata."""
    return schema.with_metadata(metadata_entry(meta))


def write_parquet(table: pa.Table, meta: dict, path: str | Path) -> None:
    """Atomically write ``table`` with ``meta`` as its ``protkit`` metadata."""
    table = table.replace_schema_metadata(metadata_entry(meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_protkit_metadata(path: str | Path, required: bool = True) -> dict:
    """The ``protkit`` metadata of a parquet or safetensors file (by suffix; parquet otherwise).

    FileNotFoundError when the file is missing; FileFormatError naming it when it is unreadable or
    holds invalid JSON there, and when it has no protkit metadata unless ``required`` is false
    (then ``{}``)."""
    path = Path(path)
    try:
        raw = _safetensors_entry(path) if path.suffix == ".safetensors" else _parquet_entry(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:
        raise FileFormatError(f"{path}: not a readable {_kind(path)} file ({err})") from err
    if raw is None and not required:
        return {}
    if raw is None:
        raise FileFormatError(f"{path}: not a protkit file (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path}: its '{METADATA_KEY}' metadata is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: its '{METADATA_KEY}' metadata is not a JSON object")
    return meta


def _kind(path: Path) -> str:
    return "safetensors" if path.suffix == ".safetensors" else "parquet"


def _parquet_entry(path: Path) -> bytes | None:
    return (pq.read_schema(path).metadata or {}).get(METADATA_KEY.encode())


def _safetensors_entry(path: Path) -> str | None:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get(METADATA_KEY)
    except SafetensorError as err:
        raise OSError(str(err)) from None
