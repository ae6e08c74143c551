"""protkit index / search / dedup / cluster / hash: real proteins with planted near-duplicates,
the columns and order of every output, LSH recall, and the refusals (exit 2, one line)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.planted import plant_copies
from protkit.cli.main import main
from protkit.search.clusters import dedup, kmeans_clusters, threshold_clusters
from protkit.search.knn import drop_self, exact_topk, recall_at_k
from protkit.search.vectors import Embeddings, normalise, read_embeddings
from protkit.sequences.fasta import write_fasta

N_REAL, N_COPIES = 1500, 100  # DeepLoc proteins drawn (those of 50-500 residues kept), planted 98% copies


@dataclass
class Planted:
    fasta: Path
    embeddings: Path
    index: Path
    sources: dict[str, str]  # copy id -> source id


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def error_line(capsys: pytest.CaptureFixture, *argv: str | Path) -> str:
    """Run a command that must fail as a user error; its one stderr line."""
    assert run(*argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("protkit: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def planted(shared_records, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """Real proteins plus planted 98% copies, embedded (mean) with the tiny student and indexed."""
    rng = np.random.default_rng(1)
    records = [shared_records[i] for i in rng.permutation(len(shared_records))[:N_REAL]]
    proteins = [(r.id, r.sequence) for r in records if 50 <= len(r.sequence) <= 500]
    copies = plant_copies(proteins, levels=(0.98,), per_level=N_COPIES, seed=0)
    directory = tmp_path_factory.mktemp("planted")
    fasta = directory / "set.fasta"
    write_fasta(proteins + [(c.id, c.sequence) for c in copies], fasta)
    embeddings, index = directory / "set.parquet", directory / "set.index"
    assert run("-q", "embed", "--model", model_dir, "--input", fasta, "--output", embeddings) == 0
    assert run("-q", "index", "--embeddings", embeddings, "--output", index) == 0
    return Planted(fasta, embeddings, index, {c.id: c.source_id for c in copies})


def test_search_finds_planted_copies_at_rank_one(planted: Planted, tmp_path: Path) -> None:
    hits_path = tmp_path / "hits.parquet"
    assert run("-q", "search", "--index", planted.index, "--query", planted.embeddings, "--k", "10",
               "--output", hits_path) == 0
    hits = pd.read_parquet(hits_path)
    assert list(hits.columns) == ["query_id", "hit_id", "rank", "score"]
    ids = read_embeddings(planted.embeddings).ids
    assert list(dict.fromkeys(hits["query_id"])) == ids  # queries in input order
    assert (hits.groupby("query_id", sort=False)["rank"].apply(list) == [list(range(1, 11))] * len(ids)).all()
    assert (hits["query_id"] != hits["hit_id"]).all()  # self hits left out
    assert (hits.groupby("query_id", sort=False)["score"].apply(lambda s: bool(np.all(np.diff(s) <= 1e-6)))).all()
    top = hits[hits["rank"] == 1].set_index("query_id")["hit_id"]
    found = np.mean([top[copy] == source for copy, source in planted.sources.items()])
    assert found >= 0.95, f"source at rank 1 for {found:.1%} of 98% copies"


def test_search_with_fasta_query_embeds_with_the_index_model(planted: Planted, tmp_path: Path) -> None:
    queries = tmp_path / "queries.fasta"
    copies = list(planted.sources)[:5]
    records = [r for r in _read(planted.fasta) if r[0] in copies]
    write_fasta(records, queries)
    out = tmp_path / "hits.parquet"
    assert run("-q", "search", "--index", planted.index, "--query", queries, "--k", "3", "--keep-self",
               "--output", out) == 0
    hits = pd.read_parquet(out)
    assert list(dict.fromkeys(hits["query_id"])) == [r[0] for r in records]
    first = hits[hits["rank"] == 1]
    assert (first["hit_id"] == first["query_id"]).all() and (first["score"] > 0.9999).all()  # itself, kept
    assert set(hits["hit_id"]) <= set(read_embeddings(planted.embeddings).ids)


def test_min_score_and_k_larger_than_the_index(planted: Planted, tmp_path: Path) -> None:
    out = tmp_path / "hits.parquet"
    assert run("-q", "search", "--index", planted.index, "--query", planted.embeddings, "--k", "5",
               "--min-score", "0.999", "--output", out) == 0
    hits = pd.read_parquet(out)
    assert (hits["score"] >= 0.999).all() and (hits["rank"] <= 5).all()
    small = tmp_path / "small.parquet"
    table = pd.read_parquet(planted.embeddings)
    _subset(planted.embeddings, small, 3)
    index = tmp_path / "small.index"
    assert run("-q", "index", "--embeddings", small, "--output", index) == 0
    assert run("-q", "search", "--index", index, "--query", small, "--k", "10", "--output", out) == 0
    hits = pd.read_parquet(out)
    assert len(hits) == 3 * 2 and set(hits["query_id"]) == set(table["id"][:3])  # the 2 others each


def test_dedup_groups_planted_copies_with_their_sources(planted: Planted, tmp_path: Path) -> None:
    out = tmp_path / "groups.parquet"
    assert run("-q", "dedup", "--embeddings", planted.embeddings, "--threshold", "0.99", "--output", out) == 0
    groups = pd.read_parquet(out)
    assert list(groups.columns) == ["id", "representative", "score"]
    assert groups["id"].tolist() == read_embeddings(planted.embeddings).ids
    rep = groups.set_index("id")["representative"]
    together = np.mean([rep[copy] == rep[source] for copy, source in planted.sources.items()])
    assert together >= 0.95, f"{together:.1%} of 98% copies share their source's group"
    assert (groups["score"] >= 0.99 - 1e-6).all()  # every member within the threshold of its representative
    reps = set(groups["representative"])
    assert (groups.set_index("id").loc[list(reps), "representative"] == list(reps)).all()


def test_hash_search_reranked_recall_on_held_out_proteins(planted: Planted, tmp_path: Path) -> None:
    """256-bit codes as search uses them (10 x k Hamming candidates, re-ranked) recover the float
    student's own top 10; Hamming alone is reported beside it."""
    embeddings = read_embeddings(planted.embeddings)
    real = [i for i, x in enumerate(embeddings.ids) if x not in planted.sources]
    database, held_out = tmp_path / "db.parquet", tmp_path / "held_out.parquet"
    cut = 2 * len(real) // 3
    _subset(planted.embeddings, database, real[:cut])
    _subset(planted.embeddings, held_out, real[cut:])
    codes = tmp_path / "codes.parquet"
    assert run("-q", "hash", "--embeddings", database, "--bits", "256", "--output", codes) == 0
    stored = pd.read_parquet(codes)
    assert list(stored.columns) == ["id", "code"] and stored["code"].map(len).eq(32).all()
    out = tmp_path / "hits.parquet"
    assert run("-q", "search", "--index", codes, "--query", held_out, "--k", "10", "--output", out) == 0
    hits = pd.read_parquet(out)
    db, queries = read_embeddings(database), read_embeddings(held_out)
    _, truth = exact_topk(db.vectors, queries.vectors, 10)
    position = {x: i for i, x in enumerate(db.ids)}
    found = np.array([[position[h] for h in group["hit_id"]] for _, group in hits.groupby("query_id", sort=False)])
    reranked = recall_at_k(truth, found)
    from protkit.search.codes import read_codes
    from protkit.search.lsh import lsh_search

    stored_codes = read_codes(codes)
    _, hamming_only = lsh_search(stored_codes.hasher, stored_codes.codes, queries.vectors, 10)
    print(f"256-bit recall@10: re-ranked {reranked:.3f}, Hamming only {recall_at_k(truth, hamming_only):.3f}")
    assert reranked >= 0.95
    assert recall_at_k(truth, hamming_only) < reranked


def test_hnsw_index_agrees_with_exact(planted: Planted, tmp_path: Path) -> None:
    index = tmp_path / "hnsw"
    assert run("-q", "index", "--embeddings", planted.embeddings, "--kind", "hnsw", "--output", index) == 0
    assert json.loads((index / "index.json").read_text())["kind"] == "hnsw"
    exact, approx = tmp_path / "exact.parquet", tmp_path / "approx.parquet"
    for target, out in ((planted.index, exact), (index, approx)):
        assert run("-q", "search", "--index", target, "--query", planted.embeddings, "--output", out) == 0
    a, b = pd.read_parquet(exact), pd.read_parquet(approx)
    shared = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.groupby("query_id", sort=False)["hit_id"].apply(list),
                                                                 b.groupby("query_id", sort=False)["hit_id"].apply(list))])
    assert shared >= 0.95


def test_index_built_with_another_model_is_refused(planted: Planted, tmp_path: Path, capsys) -> None:
    import torch
    from tiny_models import TINY_STUDENT

    from protkit.models.prothash.config import ProtHashConfig
    from protkit.models.prothash.model import ProtHash

    torch.manual_seed(7)
    other = tmp_path / "other_model"
    ProtHash(ProtHashConfig(**TINY_STUDENT)).save_pretrained(other)
    queries = tmp_path / "queries.parquet"
    fasta = tmp_path / "q.fasta"
    write_fasta(_read(planted.fasta)[:4], fasta)
    assert run("-q", "embed", "--model", other, "--input", fasta, "--output", queries) == 0
    index_fp = json.loads((planted.index / "index.json").read_text())["identity"]["model_fingerprint"]
    query_fp = read_embeddings(queries).meta["model_fingerprint"]
    line = error_line(capsys, "search", "--index", planted.index, "--query", queries, "--output", tmp_path / "h.parquet")
    assert index_fp[:12] in line and query_fp[:12] in line
    line = error_line(capsys, "search", "--index", planted.index, "--query", fasta, "--model", other,
                      "--output", tmp_path / "h.parquet")
    assert index_fp[:12] in line and query_fp[:12] in line
    assert not (tmp_path / "h.parquet").exists()


def test_other_pooling_is_refused(planted: Planted, model_dir: Path, tmp_path: Path, capsys) -> None:
    fasta, cls = tmp_path / "q.fasta", tmp_path / "cls.parquet"
    write_fasta(_read(planted.fasta)[:4], fasta)
    assert run("-q", "embed", "--model", model_dir, "--input", fasta, "--pooling", "cls", "--output", cls) == 0
    line = error_line(capsys, "search", "--index", planted.index, "--query", cls, "--output", tmp_path / "h.parquet")
    assert "no 'mean' vectors" in line and str(cls) in line


@pytest.mark.parametrize("damage", ["not_a_dir", "bad_json", "bad_faiss", "no_index"])
def test_broken_index_is_one_error_line(planted: Planted, tmp_path: Path, capsys, damage: str) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(planted.index, index)
    if damage == "not_a_dir":
        index = planted.embeddings.parent / "set.fasta"
    elif damage == "bad_json":
        (index / "index.json").write_text("{not json")
    elif damage == "bad_faiss":
        (index / "index.faiss").write_bytes(b"\x00garbage" * 10)
    else:
        index = tmp_path / "absent"
    line = error_line(capsys, "search", "--index", index, "--query", planted.embeddings, "--output", tmp_path / "h.parquet")
    assert str(index) in line
    assert not (tmp_path / "h.parquet").exists()


def test_not_an_embeddings_file_is_one_error_line(planted: Planted, tmp_path: Path, capsys) -> None:
    line = error_line(capsys, "dedup", "--embeddings", planted.fasta, "--output", tmp_path / "g.parquet")
    assert str(planted.fasta) in line and not (tmp_path / "g.parquet").exists()


# --- the grouping rules on vectors with known geometry ---------------------------------------------
def _synthetic(vectors: np.ndarray, lengths: list[int]) -> Embeddings:
    ids = [f"p{i}" for i in range(len(vectors))]
    return Embeddings(Path("synthetic.parquet"), ids, normalise(vectors), np.array(lengths), "mean", {})


def _angle(degrees: float) -> np.ndarray:
    return np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees)), 0.0])


def test_dedup_takes_longest_first_and_never_chains() -> None:
    # p0 at 0 deg, p1 at 6 deg, p2 at 12 deg, p3 far away; cos(6 deg) = 0.9945, cos(12 deg) = 0.978.
    vectors = np.stack([_angle(0), _angle(6), _angle(12), np.array([0.0, 0.0, 1.0])])
    groups = dedup(_synthetic(vectors, [100, 300, 200, 50]), threshold=0.99)
    # p1 is longest: a representative; p0 and p2 are within 6 deg of it; p3 alone.
    assert groups["representative"].tolist() == ["p1", "p1", "p1", "p3"]
    assert np.allclose(groups["score"], [np.cos(np.radians(6)), 1.0, np.cos(np.radians(6)), 1.0], atol=1e-6)
    groups = dedup(_synthetic(vectors, [300, 100, 200, 50]), threshold=0.99)
    # p0 longest: p1 joins it; p2 is 12 deg from p0, so it starts its own group (no chaining via p1).
    assert groups["representative"].tolist() == ["p0", "p0", "p2", "p3"]


def test_threshold_clusters_chain_and_kmeans_separates() -> None:
    vectors = np.stack([_angle(0), _angle(6), _angle(12), np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.1, 1.0])])
    embeddings = _synthetic(vectors, [100, 300, 200, 50, 60])
    clusters = threshold_clusters(embeddings, 0.99)
    assert list(clusters.columns) == ["id", "cluster", "representative", "score"]
    assert clusters["cluster"].tolist() == [0, 0, 0, 1, 1]  # chained through p1; largest first
    assert clusters["representative"].tolist() == ["p1", "p1", "p1", "p4", "p4"]
    kmeans = kmeans_clusters(embeddings, 2)
    assert kmeans["cluster"].tolist() == [0, 0, 0, 1, 1]
    assert kmeans.loc[0, "representative"] == "p1"  # the member nearest the centroid


def test_drop_self_and_recall() -> None:
    indices = np.array([[0, 2, 1], [0, 1, 2], [1, 0, 2]])
    scores = np.array([[1.0, 0.5, 0.4], [0.9, 1.0, 0.2], [0.8, 0.7, 0.6]])
    kept, kept_scores = drop_self(indices, scores, 2)
    assert kept.tolist() == [[2, 1], [0, 2], [1, 0]]  # row 2 lists no self hit: its last column goes
    assert kept_scores.tolist() == [[0.5, 0.4], [0.9, 0.2], [0.8, 0.7]]
    assert recall_at_k(np.array([[1, 2], [3, 4]]), np.array([[2, 9], [3, 4]])) == pytest.approx(0.75)


# --- helpers -------------------------------------------------------------------------------------
def _read(fasta: Path) -> list[tuple[str, str]]:
    from protkit.sequences.fasta import read_fasta

    return [(r.id, r.sequence) for r in read_fasta(fasta)]


def _subset(source: Path, out: Path, rows: int | list[int]) -> None:
    """Rows of an embeddings file, with its metadata."""
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    keep = list(range(rows)) if isinstance(rows, int) else rows
    pq.write_table(table.take(keep), out)


def test_itq_codes_beat_random_planes_below_the_width(planted: Planted, tmp_path: Path) -> None:
    """ITQ (learned planes) at 64 bits on 128-d vectors: better Hamming-only recall than random
    planes, and its planes travel in the codes file (search through the file = search in memory)."""
    import torch
    from tiny_models import TINY_STUDENT

    from protkit.models.prothash.config import ProtHashConfig
    from protkit.models.prothash.model import ProtHash
    from protkit.search.codes import read_codes
    from protkit.search.lsh import fit_hasher, lsh_search

    torch.manual_seed(3)
    wide = tmp_path / "wide_model"
    ProtHash(ProtHashConfig(**{**TINY_STUDENT, "teacher_dim": 128})).save_pretrained(wide)
    embeddings = tmp_path / "wide.parquet"
    assert run("-q", "embed", "--model", wide, "--input", planted.fasta, "--output", embeddings) == 0
    vectors = read_embeddings(embeddings).vectors
    database, queries = vectors[: 2 * len(vectors) // 3], vectors[2 * len(vectors) // 3:]
    _, truth = exact_topk(database, queries, 10)
    recall = {}
    for method in ("random", "auto"):
        hasher = fit_hasher(database, 64, seed=0, method=method)
        _, found = lsh_search(hasher, hasher.encode(database), queries, 10)
        recall[method] = recall_at_k(truth, found)
    print(f"64-bit Hamming-only recall@10 on 128-d vectors: random {recall['random']:.3f}, auto (itq) {recall['auto']:.3f}")
    assert recall["auto"] > recall["random"] + 0.02
    codes = tmp_path / "itq.parquet"
    assert run("-q", "hash", "--embeddings", embeddings, "--bits", "64", "--output", codes) == 0  # auto
    stored = read_codes(codes)
    refit = fit_hasher(vectors, 64, seed=0, method="itq")
    assert stored.hasher.method == "itq" and np.array_equal(stored.hasher.planes, refit.planes)
    assert np.array_equal(stored.codes, refit.encode(vectors))


def test_itq_wider_than_the_vectors_is_one_error_line(planted: Planted, tmp_path: Path, capsys) -> None:
    line = error_line(capsys, "hash", "--embeddings", planted.embeddings, "--bits", "128", "--method", "itq",
                      "--output", tmp_path / "c.parquet")
    assert "ITQ" in line and str(planted.embeddings) in line and not (tmp_path / "c.parquet").exists()


def test_fasta_query_with_an_unloadable_recorded_model_says_pass_model(planted: Planted, tmp_path: Path,
                                                                       capsys) -> None:
    """An index of format_version 1 records the model by name only (no fingerprint or paths)."""
    import shutil

    index = tmp_path / "moved.index"
    shutil.copytree(planted.index, index)
    meta = json.loads((index / "index.json").read_text())
    meta["model"] = {"model": str(tmp_path / "gone"), "int8": False}  # moved away since indexing
    (index / "index.json").write_text(json.dumps(meta))
    line = error_line(capsys, "search", "--index", index, "--query", planted.fasta, "--output", tmp_path / "h.parquet")
    assert str(planted.fasta) in line and str(tmp_path / "gone") in line
    assert line.endswith("Pass --model with that model")
    assert meta["identity"]["model_fingerprint"][:12] in line
    assert not (tmp_path / "h.parquet").exists()
