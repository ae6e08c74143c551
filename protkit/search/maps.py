"""A 2-D map of embedded proteins: the PCA of one pooling's unit vectors (the cosine geometry search
uses), each protein coloured by its cluster (``protkit cluster``'s file; cluster 0 is the largest).

PCA keeps the two directions of largest variance, so proteins that overlap on the map may still be
far apart in the full space; it is linear and seeded, so the same file gives the same map. Above
:data:`MAX_POINTS` proteins a seeded sample is fitted and drawn (the title says so)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from protkit.io.figures import save_figure
from protkit.io.outputs import claim_outputs
from protkit.search.vectors import Embeddings, read_embeddings

log = logging.getLogger(__name__)

MAX_POINTS = 20_000  # proteins drawn (and fitted); more only blot the map and slow the drawing
COLOURED_CLUSTERS = 20  # the largest clusters get a colour each (matplotlib's tab20); the rest are grey
NO_CLUSTER = -1


@dataclass
class ProteinMap:
    """The drawn proteins' ids, 2-D coordinates and clusters, and what the map was made from."""

    ids: list[str]
    xy: np.ndarray  # (n, 2) float: PC1, PC2
    explained: tuple[float, float]  # share of the variance along PC1 and PC2
    clusters: np.ndarray | None  # (n,) int64 cluster numbers (NO_CLUSTER: not in the clusters file); None: no file
    cluster_sizes: dict[int, int]  # proteins per cluster in the whole clusters file
    n_proteins: int  # proteins in the embeddings file (usable vectors)
    title: str


def protein_map(embeddings: Embeddings, clusters: pd.DataFrame | None = None, max_points: int = MAX_POINTS,
                seed: int = 0) -> ProteinMap:
    """PCA coordinates of ``embeddings`` (a seeded sample of ``max_points`` when there are more) and each
    drawn protein's cluster from ``clusters`` (columns ``id``, ``cluster``)."""
    from sklearn.decomposition import PCA

    n = len(embeddings.ids)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    vectors = embeddings.vectors[rows]  # (n, D) unit rows
    xy, explained = np.zeros((len(rows), 2)), [0.0, 0.0]
    components = min(2, len(rows), vectors.shape[1])
    if len(rows) > 1 and components:
        pca = PCA(n_components=components, random_state=seed)
        xy[:, :components] = pca.fit_transform(vectors.astype(np.float64))
        explained[:components] = [float(v) for v in np.nan_to_num(pca.explained_variance_ratio_)]
    ids = [embeddings.ids[i] for i in rows]
    numbers, sizes = None, {}
    if clusters is not None:
        of = dict(zip(clusters["id"], clusters["cluster"].astype(np.int64)))
        numbers = np.array([of.get(i, NO_CLUSTER) for i in ids], dtype=np.int64)
        sizes = {int(c): int(k) for c, k in clusters["cluster"].value_counts().items()}
    model = Path(str(embeddings.meta.get("model", "?"))).name + (" int8" if embeddings.meta.get("int8") else "")
    shown = f"{len(rows):,} of {n:,} proteins (seeded sample)" if len(rows) < n else f"{n:,} proteins"
    title = f"{embeddings.path.stem}: {shown}, {embeddings.pooling} vectors of {model}"
    return ProteinMap(ids, xy, (explained[0], explained[1]), numbers, sizes, n, title)


def cluster_colours() -> list[tuple[float, ...]]:
    """:data:`COLOURED_CLUSTERS` colours, none grey (grey is for the rest): tab20's strong colours first,
    then their light partners, then two dark ones of tab20b."""
    from matplotlib import colormaps

    tab20, tab20b = colormaps["tab20"], colormaps["tab20b"]
    strong = [tab20(i) for i in range(0, 20, 2) if i != 14]  # 14, 15: tab20's greys
    light = [tab20(i) for i in range(1, 20, 2) if i != 15]
    return (strong + light + [tab20b(4), tab20b(16)])[:COLOURED_CLUSTERS]


def plot_protein_map(pmap: ProteinMap, path: str | Path, seed: int = 0) -> None:
    """The map as a PNG: the :data:`COLOURED_CLUSTERS` largest clusters in colour (legend with their
    sizes), the others grey; one colour when there are no clusters. Proteins are drawn in a seeded
    random order, so no cluster hides under another."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 5.6), layout="constrained")
    ax = fig.add_subplot()
    size = float(np.clip(20_000 / max(len(pmap.ids), 1), 3, 30))  # points^2: bigger dots for fewer proteins
    order = np.random.default_rng(seed).permutation(len(pmap.ids))
    if pmap.clusters is None:
        ax.scatter(pmap.xy[order, 0], pmap.xy[order, 1], s=size, alpha=0.6, color="tab:blue", linewidths=0)
    else:
        palette = cluster_colours()  # RGBA tuples
        coloured = sorted(c for c in pmap.cluster_sizes if 0 <= c < COLOURED_CLUSTERS)
        grey = (0.8, 0.8, 0.8, 0.5)
        colours = np.array([palette[c] if c in coloured else grey for c in pmap.clusters.tolist()]).reshape(-1, 4)
        ax.scatter(pmap.xy[order, 0], pmap.xy[order, 1], s=size, c=colours[order], linewidths=0)
        for c in coloured:  # legend entries (empty scatters)
            ax.scatter([], [], s=20, color=palette[c], label=f"cluster {c} ({pmap.cluster_sizes[c]:,})")
        others = len(pmap.cluster_sizes) - len(coloured)
        if others or np.isin(pmap.clusters, NO_CLUSTER).any():
            n_rest = sum(k for c, k in pmap.cluster_sizes.items() if c not in coloured)
            ax.scatter([], [], s=20, color=grey, label=f"{others:,} smaller clusters ({n_rest:,})" if others
                       else "not clustered")
        fig.legend(loc="outside right upper", fontsize="x-small", title="cluster (proteins)", title_fontsize="x-small")
    ax.set(xlabel=f"PC1 ({pmap.explained[0]:.1%} of variance)", ylabel=f"PC2 ({pmap.explained[1]:.1%} of variance)")
    ax.set_title(pmap.title, fontsize="medium")
    save_figure(fig, path)


def map_file(embeddings: str | Path, output: str | Path, clusters: str | Path | None = None,
             pooling: str | None = None, max_points: int = MAX_POINTS, seed: int = 0) -> ProteinMap:
    """The map of an embeddings file (``pooling``: its default, as search uses) coloured by the
    clusters file ``clusters`` (optional), as the PNG ``output``. Unusable vectors are left out."""
    inputs = [embeddings] + ([clusters] if clusters else [])
    with claim_outputs([output], inputs=inputs):
        vectors = read_embeddings(embeddings, pooling, skip_bad=True)
        table = pd.read_parquet(clusters, columns=["id", "cluster"]) if clusters else None
        pmap = protein_map(vectors, table, max_points, seed)
        plot_protein_map(pmap, output, seed)
    log.info("map: %s, PCA %.1f%% + %.1f%% of variance: %s", pmap.title, 100 * pmap.explained[0],
             100 * pmap.explained[1], output)
    return pmap
