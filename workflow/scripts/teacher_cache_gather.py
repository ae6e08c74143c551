"""Rule teacher_cache_gather: the part caches -> one teacher cache in sequences-table order."""
from pathlib import Path

from protkit.data import read_dataset
from protkit.io.logs import start_job
from protkit.teacher import gather_cache_parts

start_job(snakemake.log[0], snakemake.threads)
gather_cache_parts(
    [Path(manifest).parent for manifest in snakemake.input.parts],
    Path(snakemake.output[0]).parent,
    read_dataset(snakemake.input.sequences),
)
