"""protkit.io: atomic writes, the one reader and writer of protkit's file metadata, vector columns,
digests and data paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from protkit.io.atomic import atomic_path, write_json
from protkit.io.columns import column_vectors, vector_column
from protkit.io.digests import file_sha256, json_sha256
from protkit.io.metadata import FileFormatError, metadata_entry, protkit_schema, read_protkit_metadata, write_parquet
from protkit.io.paths import DataPathError, resolve_data_path


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary file left


def test_parquet_metadata_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    meta = {"kind": "x", "n": 2, "nested": {"b": [1, 2]}}
    write_parquet(pa.table({"id": ["a", "b"]}), meta, path)
    assert read_protkit_metadata(path) == meta
    raw = pq.read_schema(path).metadata[b"protkit"]
    assert raw == json.dumps(meta, sort_keys=True).encode()  # the format rule: sorted JSON under "protkit"
    schema = protkit_schema(pa.schema([("id", pa.string())]), meta)
    assert schema.metadata == {b"protkit": raw}


def test_safetensors_metadata_is_read_by_the_same_reader(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata=metadata_entry({"fingerprint": "f"}))
    assert read_protkit_metadata(path) == {"fingerprint": "f"}


def test_metadata_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_protkit_metadata(tmp_path / "absent.parquet")
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["a"]}), plain)
    with pytest.raises(FileFormatError, match=r"plain\.parquet: not a protkit file"):
        read_protkit_metadata(plain)
    assert read_protkit_metadata(plain, required=False) == {}
    text = tmp_path / "text.parquet"
    text.write_text("id,seq\n")
    with pytest.raises(FileFormatError, match=r"text\.parquet: not a readable parquet file"):
        read_protkit_metadata(text)
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"id": ["a"]}).replace_schema_metadata({"protkit": "{not json"}), broken)
    with pytest.raises(FileFormatError, match=r"broken\.parquet: its 'protkit' metadata is not valid JSON"):
        read_protkit_metadata(broken)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(FileFormatError, match=r"damaged\.safetensors: not a readable safetensors file"):
        read_protkit_metadata(damaged)


@pytest.mark.parametrize(("store_dtype", "numpy_type"), [("fp32", np.float32), ("fp16", np.float16)])
def test_vector_columns_round_trip(store_dtype: str, numpy_type: type) -> None:
    vectors = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)  # (N, D)
    column = vector_column(vectors, store_dtype)
    assert column.type.list_size == 3
    back = column_vectors(pa.chunked_array([column]), 3)
    assert back.dtype == numpy_type and np.array_equal(back, vectors.astype(numpy_type))
    assert np.array_equal(column_vectors(column), back)  # the width read from the rows


def test_digests(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100_000)
    assert file_sha256(path, chunk=7) == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert json_sha256({"b": 1, "a": [1, 2]}) == json_sha256({"a": [1, 2], "b": 1})
    assert json_sha256({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


def test_data_paths_inside_installed_packages(tmp_path: Path) -> None:
    assert resolve_data_path("pyhmmer:tests/data/seqs/PKSI.faa").is_file()
    assert resolve_data_path(str(tmp_path / "x.fasta")) == tmp_path / "x.fasta"
    with pytest.raises(DataPathError, match="package 'no_such_package' is not installed"):
        resolve_data_path("no_such_package:a.fasta")
    with pytest.raises(DataPathError, match="absent.faa not found in package pyhmmer"):
        resolve_data_path("pyhmmer:absent.faa")
