"""Vector hygiene: NaN, inf, all-zero, missing and wrong-width vectors are refused by index, search,
dedup, cluster and hash with the file and the first ids, or left out and listed with
--skip-bad-vectors; FAISS and numpy never surface as tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protkit.cli.main import main
from protkit.io.metadata import read_protkit_metadata, write_parquet
from protkit.search.hygiene import UnusableVectors, column_rows, require_usable, unusable_rows

DIM = 8
BAD = {"p3": "NaN", "p5": "inf", "p7": "all zero"}


def embeddings_file(path: Path, vectors: list | np.ndarray, fixed: bool = True) -> Path:
    ids = [f"p{i}" for i in range(len(vectors))]
    if fixed:
        flat = pa.array(np.asarray(vectors, np.float32).reshape(-1), pa.float32())
        column = pa.FixedSizeListArray.from_arrays(flat, DIM)
    else:
        column = pa.array([None if v is None else list(map(float, v)) for v in vectors], pa.list_(pa.float32()))
    table = pa.table({"id": ids, "length": pa.array([100 + i for i in range(len(ids))], pa.int32()), "mean": column})
    write_parquet(table, {"poolings": ["mean"], "dim": DIM, "model_fingerprint": "f", "space": "teacher"}, path)
    return path


@pytest.fixture
def vectors() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((20, DIM)).astype(np.float32)
    x[3, 2], x[5, 0], x[7] = np.nan, np.inf, 0.0
    return x


def test_unusable_rows_names_each_reason(vectors: np.ndarray) -> None:
    assert unusable_rows(vectors) == {3: "NaN", 5: "inf", 7: "all zero"}
    with pytest.raises(UnusableVectors, match=r"the fp32 student: unusable vectors in 3 row\(s\): p3 \(NaN\), "
                                              r"p5 \(inf\), p7 \(all zero\)"):
        require_usable(vectors, [f"p{i}" for i in range(20)], "the fp32 student")


def test_rows_of_another_width_and_missing_rows_are_found() -> None:
    rows = [np.ones(DIM), np.ones(DIM - 1), None, np.ones(DIM)]
    column = pa.array([None if v is None else list(v) for v in rows], pa.list_(pa.float32()))
    out, bad = column_rows(column, DIM)
    assert out.shape == (4, DIM) and bad == {1: f"width {DIM - 1} (expected {DIM})", 2: "missing"}


@pytest.mark.parametrize("command", [
    ["index"], ["dedup"], ["cluster", "--k", "3"], ["cluster", "--threshold", "0.9"], ["hash", "--bits", "64"],
])
def test_commands_refuse_bad_vectors_naming_the_file_and_ids(tmp_path: Path, vectors: np.ndarray, capsys,
                                                             command: list[str]) -> None:
    source = embeddings_file(tmp_path / "bad.parquet", vectors)
    out = tmp_path / "out"
    assert main(["-q", command[0], "--embeddings", str(source), "--output", str(out), *command[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"protkit: error: {source}: unusable mean vectors in 3 row(s): "
                                               "p3 (NaN), p5 (inf), p7 (all zero)"), err
    assert "--skip-bad-vectors" in err[0] and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


@pytest.mark.parametrize("command", [["dedup"], ["cluster", "--k", "3"], ["hash", "--bits", "64"], ["index"]])
def test_skip_bad_vectors_leaves_them_out_and_lists_them(tmp_path: Path, vectors: np.ndarray,
                                                         command: list[str]) -> None:
    source = embeddings_file(tmp_path / "bad.parquet", vectors)
    out = tmp_path / "out"
    assert main(["-q", command[0], "--embeddings", str(source), "--output", str(out), "--skip-bad-vectors",
                 *command[1:]]) == 0
    meta = json.loads((out / "index.json").read_text()) if out.is_dir() else read_protkit_metadata(out)
    assert [(s["id"], s["reason"]) for s in meta["skipped"]] == list(BAD.items())
    ids = pq.read_table(out / "ids.parquet" if out.is_dir() else out).column("id").to_pylist()
    assert ids == [f"p{i}" for i in range(20) if f"p{i}" not in BAD]


def test_search_refuses_bad_queries_and_skips_them_on_request(tmp_path: Path, vectors: np.ndarray, capsys) -> None:
    good = vectors.copy()
    good[[3, 5, 7]] = 1.0
    index = tmp_path / "index"
    assert main(["-q", "index", "--embeddings", str(embeddings_file(tmp_path / "good.parquet", good)),
                 "--output", str(index)]) == 0
    queries = embeddings_file(tmp_path / "queries.parquet", vectors)
    hits = tmp_path / "hits.parquet"
    assert main(["-q", "search", "--index", str(index), "--query", str(queries), "--output", str(hits)]) == 2
    assert "p3 (NaN)" in capsys.readouterr().err and not hits.exists()
    assert main(["-q", "search", "--index", str(index), "--query", str(queries), "--output", str(hits),
                 "--skip-bad-vectors"]) == 0
    assert set(pq.read_table(hits).column("query_id").to_pylist()).isdisjoint(BAD)
    assert [s["id"] for s in read_protkit_metadata(hits)["skipped_queries"]] == list(BAD)


def test_a_row_of_another_width_is_refused_not_a_traceback(tmp_path: Path, capsys) -> None:
    rows = [np.ones(DIM) * (i + 1) for i in range(5)]
    rows[2] = np.ones(DIM + 3)
    source = embeddings_file(tmp_path / "ragged.parquet", rows, fixed=False)
    assert main(["-q", "dedup", "--embeddings", str(source), "--output", str(tmp_path / "d.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"p2 (width {DIM + 3} (expected {DIM}))" in err and "Traceback" not in err
