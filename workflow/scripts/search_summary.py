"""Rule search_summary: one row per model and input (proteins, near-duplicate groups, clusters, hits)."""
from protkit.io.logs import start_job
from protkit.search.summary import write_summary

start_job(snakemake.log[0], snakemake.threads)
write_summary(snakemake.input, snakemake.output[0])
