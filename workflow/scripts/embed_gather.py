"""Rule embed_gather: shards -> one parquet in FASTA order."""
from protkit.embed import gather_shards
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
gather_shards(snakemake.input, snakemake.output[0])
