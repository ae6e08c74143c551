"""Rule dedup: near-duplicate groups of an embeddings file (as protkit dedup)."""
from protkit.io.logs import start_job
from protkit.search.commands import dedup_file

start_job(snakemake.log[0], snakemake.threads, faiss=True)
dedup_file(snakemake.input[0], snakemake.output[0], snakemake.params.threshold, snakemake.params.pooling)
