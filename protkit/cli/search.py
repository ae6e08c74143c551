"""The ``protkit`` commands that work on embeddings: index, search, dedup, cluster, hash.

Each parser is added by :func:`add_commands`; :func:`run_search` dispatches to the library functions that
the pipeline's rules call too (:mod:`protkit.search.commands`, :func:`protkit.search.query.search`).
"""

from __future__ import annotations

import argparse

from protkit.cli.types import code_bits, cosine, positive_int
from protkit.search.index import EXACT_MAX, INDEX_KINDS
from protkit.search.lsh import CANDIDATE_FACTOR, METHODS

COMMANDS = ("index", "search", "dedup", "cluster", "hash")


def _embeddings_args(parser: argparse.ArgumentParser, output: str = "output parquet file") -> None:
    parser.add_argument("--embeddings", required=True, help="embeddings parquet file written by protkit embed")
    parser.add_argument("--pooling", default=None, help="which pooled vectors (default: mean when present)")
    parser.add_argument("--output", required=True, help=f"{output} (written atomically)")
    _skip_bad_arg(parser)


def _skip_bad_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-bad-vectors", action="store_true",
                        help="leave out vectors with NaN, inf, all zeros or another width (listed in the output's "
                        "metadata) instead of stopping at them")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the index, search, dedup, cluster and hash parsers."""
    index = commands.add_parser("index", help="build a cosine index of an embeddings file",
                                description="A FAISS index directory: exact (float32) up to "
                                f"{EXACT_MAX:,} proteins, HNSW (float16) above, or as --kind says.")
    _embeddings_args(index, "index directory")
    index.add_argument("--kind", choices=INDEX_KINDS, default="auto", help="default auto")

    search = commands.add_parser("search", help="the k nearest proteins of each query",
                                 description="Output parquet: query_id, hit_id, rank (1-based), score (cosine), "
                                 "then query_description and hit_description when known; queries in input order. "
                                 "A FASTA query is embedded first with --model (default: the model recorded in the "
                                 "index).")
    search.add_argument("--index", required=True, help="index directory (protkit index) or codes file (protkit hash)")
    search.add_argument("--query", required=True, help="embeddings parquet file or FASTA file (.gz ok)")
    search.add_argument("--output", required=True, help="hits parquet file (written atomically)")
    search.add_argument("--k", type=positive_int, default=10, help="hits per query (default 10)")
    search.add_argument("--min-score", type=cosine, default=None, help="leave out hits below this cosine")
    search.add_argument("--keep-self", action="store_true",
                        help="keep a hit with the query's own id (left out by default)")
    search.add_argument("--model", default=None,
                        help="model that embeds a FASTA query (default: the index's, found by its path relative to "
                        "the index, then its absolute path; it must have the fingerprint the index records)")
    search.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                        help="embed a FASTA query with the int8 model (default: as the index was)")
    _skip_bad_arg(search)
    search.add_argument("--vectors", default=None,
                        help=f"codes file only: embeddings whose float vectors re-rank the {CANDIDATE_FACTOR} x k "
                        "Hamming candidates (default: the file the codes were made from)")

    dedup = commands.add_parser("dedup", help="near-duplicate groups (CD-HIT's greedy rule on cosine)",
                                description="Output parquet: id, representative (the longest protein of its group), "
                                "score (cosine to it), description (when the embeddings have it), in input order. "
                                "Each member is within the threshold of its representative.")
    _embeddings_args(dedup)
    dedup.add_argument("--threshold", type=cosine, default=0.99, help="cosine (default 0.99)")

    cluster = commands.add_parser("cluster", help="clusters: spherical k-means or threshold components",
                                  description="Output parquet: id, cluster (0 = largest), representative, score "
                                  "(cosine to the representative), description (when the embeddings have it), in "
                                  "input order.")
    _embeddings_args(cluster)
    how = cluster.add_mutually_exclusive_group(required=True)
    how.add_argument("--k", type=positive_int, help="k-means with this many clusters")
    how.add_argument("--threshold", type=cosine, help="connected components of pairs at or above this cosine")
    cluster.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")

    hashing = commands.add_parser("hash", help="binary LSH codes (random hyperplanes on centred vectors)",
                                  description="Output parquet: id, code (bits / 8 bytes). Search it with "
                                  "protkit search --index CODES.")
    _embeddings_args(hashing)
    hashing.add_argument("--bits", type=code_bits, default=256, help="code length (default 256)")
    hashing.add_argument("--seed", type=int, default=0, help="hyperplane seed (default 0)")
    hashing.add_argument("--method", choices=METHODS, default="auto",
                         help="random hyperplanes, or itq: planes learned from the vectors (PCA + rotation; "
                         "needs bits <= width); default auto: itq where it can, random above the width")


def run_search(args: argparse.Namespace) -> None:
    """Run one of :data:`COMMANDS` through the functions the pipeline's rules call too."""
    from protkit.search import commands
    from protkit.search.query import search

    skip = args.skip_bad_vectors
    if args.command == "search":
        search(args.index, args.query, args.output, args.k, model=args.model, int8=args.int8,
               min_score=args.min_score, keep_self=args.keep_self, rerank_vectors=args.vectors, skip_bad=skip)
    elif args.command == "index":
        commands.index_file(args.embeddings, args.output, args.pooling, args.kind, skip)
    elif args.command == "hash":
        commands.hash_file(args.embeddings, args.output, args.bits, args.seed, args.method, args.pooling, skip)
    elif args.command == "dedup":
        commands.dedup_file(args.embeddings, args.output, args.threshold, args.pooling, skip)
    else:
        commands.cluster_file(args.embeddings, args.output, k=args.k, threshold=args.threshold, seed=args.seed,
                              pooling=args.pooling, skip_bad=skip)
