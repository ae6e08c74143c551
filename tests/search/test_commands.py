"""protkit index / search / dedup / cluster / hash on an everyday file: header descriptions carried
into every output, files without descriptions still read, one summary line per command (hidden by
-q), and no raw FAISS k-means warning."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from protkit.cli.main import main
from protkit.io.metadata import read_protkit_metadata
from protkit.search.vectors import read_embeddings

N_PROTEINS = 30  # real DeepLoc proteins, plus a copy of the first and a bare header


@dataclass
class Described:
    fasta: Path
    embeddings: Path
    index: Path
    descriptions: dict[str, str | None]  # id -> header text after the id (None: a bare header)


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def described(shared_records, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Described:
    """Real proteins with their DeepLoc headers, a bare-header copy of the first (``copy``) and a
    bare-header protein (``bare``), embedded (mean) and indexed."""
    records = [r for r in shared_records if 50 <= len(r.sequence) <= 300][:N_PROTEINS]
    directory = tmp_path_factory.mktemp("described")
    fasta = directory / "set.fasta"
    fasta.write_text("".join(f">{r.description}\n{r.sequence}\n" for r in records)
                     + f">copy\n{records[0].sequence}\n>bare   \n{records[1].sequence[::-1]}\n")
    descriptions = {r.id: r.description.split(maxsplit=1)[1] for r in records} | {"copy": None, "bare": None}
    embeddings, index = directory / "set.parquet", directory / "set.index"
    assert run("-q", "embed", "--model", model_dir, "--input", fasta, "--output", embeddings) == 0
    assert run("-q", "index", "--embeddings", embeddings, "--output", index) == 0
    return Described(fasta, embeddings, index, descriptions)


def test_embeddings_keep_the_header_text_after_the_id(described: Described) -> None:
    table = pq.read_table(described.embeddings)
    assert table.column_names[:4] == ["id", "description", "length", "truncated"]
    assert dict(zip(table.column("id").to_pylist(), table.column("description").to_pylist())) == described.descriptions
    assert any(" " in d for d in described.descriptions.values() if d)  # real headers: several words kept whole
    assert read_embeddings(described.embeddings).descriptions == list(described.descriptions.values())


def test_hits_groups_and_clusters_carry_descriptions(described: Described, tmp_path: Path) -> None:
    hits_path, groups_path, clusters_path = tmp_path / "hits.parquet", tmp_path / "g.parquet", tmp_path / "c.parquet"
    assert run("-q", "search", "--index", described.index, "--query", described.fasta, "--k", "3",
               "--output", hits_path) == 0  # FASTA queries: embedded, their headers read again
    hits = pd.read_parquet(hits_path)
    assert list(hits.columns) == ["query_id", "hit_id", "rank", "score", "query_description", "hit_description"]
    know = described.descriptions
    for column, ids in (("query_description", "query_id"), ("hit_description", "hit_id")):
        assert [None if pd.isna(d) else d for d in hits[column]] == [know[i] for i in hits[ids]]
    first = hits[hits["query_id"] == "copy"].iloc[0]  # the copy finds its source, with the source's header
    assert first["hit_id"] == next(iter(know)) and first["hit_description"] == know[first["hit_id"]]
    assert run("-q", "dedup", "--embeddings", described.embeddings, "--output", groups_path) == 0
    assert run("-q", "cluster", "--embeddings", described.embeddings, "--threshold", "0.99",
               "--output", clusters_path) == 0
    for path, columns in ((groups_path, ["id", "representative", "score", "description"]),
                          (clusters_path, ["id", "cluster", "representative", "score", "description"])):
        table = pq.read_table(path)
        assert table.column_names == columns and str(table.schema.field("description").type) == "string"
        assert dict(zip(table.column("id").to_pylist(), table.column("description").to_pylist())) == know


def test_files_without_descriptions_still_read(described: Described, tmp_path: Path) -> None:
    """Embeddings files of earlier protkit versions (no description column): outputs without one."""
    old = tmp_path / "old.parquet"
    table = pq.read_table(described.embeddings)
    pq.write_table(table.drop_columns(["description"]), old)  # schema metadata (protkit's) kept
    assert read_embeddings(old).descriptions is None
    index, hits, groups = tmp_path / "old.index", tmp_path / "hits.parquet", tmp_path / "groups.parquet"
    assert run("-q", "index", "--embeddings", old, "--output", index) == 0
    assert run("-q", "search", "--index", index, "--query", old, "--k", "2", "--output", hits) == 0
    assert list(pd.read_parquet(hits).columns) == ["query_id", "hit_id", "rank", "score"]
    assert run("-q", "search", "--index", index, "--query", described.embeddings, "--k", "2", "--output", hits) == 0
    assert list(pd.read_parquet(hits).columns) == ["query_id", "hit_id", "rank", "score", "query_description"]
    assert run("-q", "dedup", "--embeddings", old, "--output", groups) == 0
    assert list(pd.read_parquet(groups).columns) == ["id", "representative", "score"]


def test_each_command_logs_one_summary_line(described: Described, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    n = len(described.descriptions)
    names = ("idx", "g.parquet", "c.parquet", "k.parquet", "codes.parquet", "h.parquet")
    out = {name: tmp_path / name for name in names}
    commands = {
        "index": ["index", "--embeddings", described.embeddings, "--output", out["idx"]],
        "dedup": ["dedup", "--embeddings", described.embeddings, "--output", out["g.parquet"]],
        "cluster": ["cluster", "--embeddings", described.embeddings, "--threshold", "0.99",
                    "--output", out["c.parquet"]],
        "kmeans": ["cluster", "--embeddings", described.embeddings, "--k", "4", "--output", out["k.parquet"]],
        "hash": ["hash", "--embeddings", described.embeddings, "--bits", "64", "--output", out["codes.parquet"]],
        "search": ["search", "--index", out["idx"], "--query", described.embeddings, "--output", out["h.parquet"]],
    }
    lines = {}
    for name, argv in commands.items():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert run(*argv) == 0
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("protkit.search")]
        assert len(ours) == 1, ours
        lines[name] = ours[0]
    groups = pd.read_parquet(out["g.parquet"])["representative"].value_counts()
    assert lines["dedup"] == (f"dedup: {n} proteins -> {len(groups)} groups, largest {groups.max()} (cosine >= 0.99): "
                              f"{out['g.parquet']}")
    assert groups.max() == 2  # the copy joins its source
    clusters = pd.read_parquet(out["k.parquet"])["cluster"].value_counts()
    assert lines["kmeans"] == (f"cluster: {n} proteins -> 4 clusters, largest {clusters.max()} (k-means, k 4): "
                               f"{out['k.parquet']}")
    components = pd.read_parquet(out["c.parquet"])["cluster"].value_counts()
    assert lines["cluster"] == (f"cluster: {n} proteins -> {len(components)} clusters, largest {components.max()} "
                                f"(components of cosine >= 0.99): {out['c.parquet']}")
    assert lines["index"] == f"index: {n} proteins (mean, 64-d, exact): {out['idx']}"
    method = read_protkit_metadata(out["codes.parquet"])["method"]
    assert lines["hash"] == f"hash: {n} proteins -> 64-bit codes ({method} planes, mean pooling): " \
        f"{out['codes.parquet']}"
    assert lines["search"] == f"search: {n} queries -> {10 * n} hits against {n} proteins (k 10): {out['h.parquet']}"


def test_quiet_hides_the_summary_line(described: Described, tmp_path: Path) -> None:
    protkit = str(Path(sys.executable).with_name("protkit"))
    argv = ["dedup", "--embeddings", str(described.embeddings), "--output"]
    loud = subprocess.run([protkit, *argv, str(tmp_path / "a.parquet")], capture_output=True, text=True, timeout=300)
    quiet = subprocess.run([protkit, "-q", *argv, str(tmp_path / "b.parquet")], capture_output=True, text=True,
                           timeout=300)
    assert loud.returncode == quiet.returncode == 0
    groups = pd.read_parquet(tmp_path / "a.parquet")["representative"].value_counts()
    ours = [line for line in loud.stderr.splitlines() if "protkit.search" in line]
    assert len(ours) == 1 and ours[0].endswith(
        f"INFO protkit.search.commands: dedup: {N_PROTEINS + 2} proteins -> {len(groups)} groups, largest "
        f"{groups.max()} (cosine >= 0.99): {tmp_path / 'a.parquet'}")
    assert "protkit.search" not in quiet.stderr and "dedup:" not in quiet.stderr


def test_kmeans_prints_no_faiss_warning(capfd: pytest.CaptureFixture) -> None:
    """FAISS writes "WARNING clustering N points to k centroids: please provide at least ..." to
    stderr below 39 points a centroid (advice for training quantizers); the clusters are the same."""
    import faiss

    from protkit.search.clusters import kmeans_clusters
    from protkit.search.vectors import Embeddings, normalise

    vectors = normalise(np.random.default_rng(0).normal(size=(300, 16)))
    embeddings = Embeddings(Path("synthetic.parquet"), [f"p{i}" for i in range(300)], vectors, None, "mean", {})
    capfd.readouterr()
    table = kmeans_clusters(embeddings, 30)
    assert "WARNING" not in capfd.readouterr().err
    plain = faiss.Kmeans(16, 30, niter=25, seed=0, spherical=True, verbose=False, max_points_per_centroid=256)
    plain.train(vectors)
    assert "please provide at least" in capfd.readouterr().err  # what FAISS says by default
    _, assignment = plain.index.search(vectors, 1)
    assert table["cluster"].nunique() == 30
    assert pd.crosstab(table["cluster"], assignment[:, 0]).gt(0).sum(axis=1).eq(1).all()  # the same partition
