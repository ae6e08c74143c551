"""The search stage's protein map (protkit.search.maps): PCA coordinates that keep planted groups apart,
clusters joined by id, the seeded sample above max_points, and the PNG from real embedding files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from protkit.cli.main import main
from protkit.search.maps import COLOURED_CLUSTERS, NO_CLUSTER, map_file, plot_protein_map, protein_map
from protkit.search.vectors import Embeddings, normalise
from protkit.sequences.fasta import write_fasta

PNG = b"\x89PNG\r\n\x1a\n"


def planted_groups(n_per_group: int = 40, groups: int = 3, dim: int = 16) -> Embeddings:
    """Unit vectors in ``groups`` tight groups around random centres (ids g<group>_<i>)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(groups, dim)) * 3
    vectors = np.concatenate([c + rng.normal(scale=0.2, size=(n_per_group, dim)) for c in centres])
    ids = [f"g{g}_{i}" for g in range(groups) for i in range(n_per_group)]
    meta = {"model": "results/models/tiny", "int8": True, "poolings": ["mean"], "dim": dim}
    return Embeddings(Path("set.parquet"), ids, normalise(vectors), None, "mean", meta)


def test_pca_keeps_planted_groups_apart_and_joins_clusters_by_id() -> None:
    embeddings = planted_groups()
    clusters = pd.DataFrame({"id": embeddings.ids[::-1], "cluster": [int(i[1]) for i in embeddings.ids[::-1]]})
    pmap = protein_map(embeddings, clusters.iloc[:-1])  # g0_0 absent from the clusters file
    assert pmap.ids == embeddings.ids and pmap.xy.shape == (120, 2) and pmap.n_proteins == 120
    assert pmap.clusters.tolist() == [NO_CLUSTER] + [int(i[1]) for i in embeddings.ids[1:]]
    assert pmap.cluster_sizes == {0: 39, 1: 40, 2: 40}
    assert 0.5 < sum(pmap.explained) <= 1.0 and pmap.explained[0] >= pmap.explained[1]
    centres = np.stack([pmap.xy[g * 40:(g + 1) * 40].mean(axis=0) for g in range(3)])
    spread = max(np.linalg.norm(pmap.xy[g * 40:(g + 1) * 40] - centres[g], axis=1).max() for g in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > spread  # the groups do not overlap on the map
    assert pmap.title == "set: 120 proteins, mean vectors of tiny int8"


def test_sample_above_max_points_is_seeded() -> None:
    embeddings = planted_groups()
    first, again = protein_map(embeddings, max_points=50), protein_map(embeddings, max_points=50)
    assert len(first.ids) == 50 and first.ids == again.ids and first.n_proteins == 120
    assert [embeddings.ids.index(i) for i in first.ids] == sorted(embeddings.ids.index(i) for i in first.ids)
    np.testing.assert_array_equal(first.xy, again.xy)
    assert first.clusters is None and "50 of 120 proteins (seeded sample)" in first.title
    assert protein_map(embeddings, max_points=50, seed=1).ids != first.ids


def test_one_protein_and_many_clusters_still_draw(tmp_path: Path) -> None:
    embeddings = planted_groups(n_per_group=1, groups=1)
    pmap = protein_map(embeddings, pd.DataFrame({"id": embeddings.ids, "cluster": [0]}))
    assert pmap.xy.tolist() == [[0.0, 0.0]] and pmap.explained == (0.0, 0.0)
    plot_protein_map(pmap, tmp_path / "one.png")
    many = planted_groups(n_per_group=2, groups=30)
    table = pd.DataFrame({"id": many.ids, "cluster": np.arange(60) // 2})
    assert COLOURED_CLUSTERS < 30
    plot_protein_map(protein_map(many, table), tmp_path / "many.png")  # 20 coloured, 10 grey
    assert all((tmp_path / name).read_bytes()[:8] == PNG for name in ("one.png", "many.png"))


@pytest.fixture(scope="module")
def embedded(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Random proteins embedded by the tiny student, and their k-means clusters (``protkit cluster``)."""
    rng = random.Random(3)
    records = [(f"p{i}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(30, 120))))
               for i in range(60)]
    directory = tmp_path_factory.mktemp("map")
    fasta, embeddings, clusters = directory / "set.fasta", directory / "set.parquet", directory / "clusters.parquet"
    write_fasta(records, fasta)
    assert main(["-q", "embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(embeddings),
                 "--pooling", "mean,cls"]) == 0
    assert main(["-q", "cluster", "--embeddings", str(embeddings), "--k", "4", "--output", str(clusters)]) == 0
    return embeddings, clusters


def test_map_file_from_embeddings_and_clusters(embedded: tuple[Path, Path], tmp_path: Path) -> None:
    embeddings, clusters = embedded
    out = tmp_path / "map.png"
    pmap = map_file(embeddings, out, clusters=clusters, pooling="cls")
    assert out.read_bytes()[:8] == PNG and not list(tmp_path.glob("*.tmp"))
    table = pd.read_parquet(clusters)
    assert pmap.ids == table["id"].tolist() and pmap.clusters.tolist() == table["cluster"].tolist()
    assert pmap.title.startswith("set: 60 proteins, cls vectors of ")
    plain = map_file(embeddings, tmp_path / "plain.png")  # no clusters: one colour, the file's default pooling
    assert plain.clusters is None and "mean vectors" in plain.title
    assert (tmp_path / "plain.png").read_bytes()[:8] == PNG
