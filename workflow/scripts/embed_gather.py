"""Rule embed_gather: shards -> one parquet in FASTA order."""
from protkit.embed import gather_shards
from protkit.logs import to_file

to_file(snakemake.log[0])
gather_shards(snakemake.input, snakemake.output[0])
