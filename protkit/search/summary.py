"""The pipeline's search summary (``results/search/summary.tsv``): per model and embedded file, the
proteins, near-duplicate groups and clusters; per query file, the queries with hits and the median
top-hit cosine. Reads the files of rules search_index, search_queries, dedup and cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from protkit.io.atomic import atomic_path
from protkit.io.outputs import claim_outputs
from protkit.io.metadata import read_protkit_metadata

COLUMNS = ("model", "name", "query", "proteins", "dedup_groups", "largest_dedup_group", "clusters",
           "largest_cluster", "queries", "queries_with_hits", "median_top_score")


def _group_sizes(path: Path, column: str) -> tuple[int, int]:
    sizes = pd.read_parquet(path, columns=[column])[column].value_counts()
    return len(sizes), int(sizes.max()) if len(sizes) else 0


def summary_table(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per results/search/{model}/{name} directory, one more per hits file in it."""
    rows: dict[tuple[str, str, str], dict] = {}
    for path in map(Path, paths):
        model, name = path.parent.parent.name, path.parent.name
        row = rows.setdefault((model, name, ""), {"model": model, "name": name, "query": ""})
        if path.name == "index":
            row["proteins"] = json.loads((path / "index.json").read_text())["n"]
        elif path.name == "dedup.parquet":
            row["dedup_groups"], row["largest_dedup_group"] = _group_sizes(path, "representative")
        elif path.name == "clusters.parquet":
            row["clusters"], row["largest_cluster"] = _group_sizes(path, "cluster")
        elif path.name.startswith("hits-"):
            query = path.stem.removeprefix("hits-")
            hits = pd.read_parquet(path)
            top = hits[hits["rank"] == 1]["score"]
            rows[(model, name, query)] = {
                "model": model, "name": name, "query": query,
                "queries": read_protkit_metadata(path).get("n_queries"),
                "queries_with_hits": int(hits["query_id"].nunique()),
                "median_top_score": float(np.median(top)) if len(top) else None,
            }
    return pd.DataFrame(list(rows.values()), columns=list(COLUMNS))


def write_summary(paths: Sequence[str | Path], out_tsv: str | Path) -> pd.DataFrame:
    """``summary.tsv`` of the search outputs ``paths`` (:func:`summary_table`)."""
    with claim_outputs([out_tsv], inputs=paths):
        table = summary_table(paths)
        with atomic_path(out_tsv) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table
