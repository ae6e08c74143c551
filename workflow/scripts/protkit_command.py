"""Rules search_index, search_queries, dedup, cluster: the protkit command in params.argv (the CLI's own code)."""
import sys

import faiss

from protkit.cli import main
from protkit.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
faiss.omp_set_num_threads(max(1, int(snakemake.threads)))
status = main(snakemake.params.argv)
if status:
    sys.exit(status)
