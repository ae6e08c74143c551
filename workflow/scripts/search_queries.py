"""Rule search_queries: the k nearest proteins of each query in an index (as protkit search)."""
from protkit.io.logs import start_job
from protkit.search.query import search

start_job(snakemake.log[0], snakemake.threads, faiss=True)
search(snakemake.input.index, snakemake.input.queries, snakemake.output[0], snakemake.params.k,
       min_score=snakemake.params.min_score)
