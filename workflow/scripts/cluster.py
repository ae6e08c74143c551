"""Rule cluster: clusters of an embeddings file, by k-means or threshold components (as protkit cluster)."""
from protkit.io.logs import start_job
from protkit.search.commands import cluster_file

start_job(snakemake.log[0], snakemake.threads, faiss=True)
cluster_file(snakemake.input[0], snakemake.output[0], k=snakemake.params.k, threshold=snakemake.params.threshold,
             pooling=snakemake.params.pooling)
