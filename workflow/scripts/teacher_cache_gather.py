"""Rule teacher_cache_gather: the part caches -> one teacher cache in sequences-table order."""
from pathlib import Path

from protkit.cache_parts import gather_cache_parts
from protkit.data import read_dataset
from protkit.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
gather_cache_parts(
    [Path(manifest).parent for manifest in snakemake.input.parts],
    Path(snakemake.output[0]).parent,
    read_dataset(snakemake.input.sequences),
)
