"""Rule embed_shard: one shard (round-robin records) of a FASTA file through a student."""
from protkit.embed import embed_fasta, load_embedder
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
embed_fasta(
    load_embedder(snakemake.params.model_dir, int8=snakemake.params.int8, backend="torch",
                  device=snakemake.params.device),
    snakemake.input.fasta,
    snakemake.output[0],
    shard=(int(snakemake.wildcards.shard), int(snakemake.wildcards.nshards)),
    poolings=settings["poolings"],
    max_tokens=settings["max_tokens"],
    overlength=settings["overlength"],
    store_dtype=settings["store_dtype"],
)
