"""Rule search_index: an embeddings file -> its FAISS index directory (as protkit index)."""
from protkit.io.logs import start_job
from protkit.search.commands import index_file

start_job(snakemake.log[0], snakemake.threads, faiss=True)
index_file(snakemake.input[0], snakemake.output[0], snakemake.params.pooling, snakemake.params.kind)
