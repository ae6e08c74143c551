"""The search stage (``workflow/rules/search.smk``) and ``protkit index``, ``search``, ``dedup``,
``cluster`` and ``hash``: embedded proteins searched, de-duplicated, clustered and hashed."""

from protkit.search.clusters import dedup, kmeans_clusters, threshold_clusters
from protkit.search.codes import hash_embeddings, read_codes
from protkit.search.index import build_index, load_index
from protkit.search.query import search
from protkit.search.vectors import Embeddings, SearchError, read_embeddings

__all__ = [
    "Embeddings", "SearchError", "build_index", "dedup", "hash_embeddings", "kmeans_clusters", "load_index",
    "read_codes", "read_embeddings", "search", "threshold_clusters",
]  # fmt: skip
