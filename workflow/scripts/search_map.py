"""Rule search_map: a 2-D map (PCA) of an embedded input's proteins, coloured by cluster."""
from protkit.io.logs import start_job
from protkit.search.maps import map_file

start_job(snakemake.log[0], snakemake.threads)
map_file(snakemake.input.embeddings, snakemake.output[0], clusters=snakemake.input.get("clusters"),
         pooling=snakemake.params.pooling)
