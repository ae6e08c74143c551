"""Rule filter_split: raw sequences -> filtered, de-duplicated, split table + report (streamed)."""
from protkit.data import filter_split
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
filter_split(snakemake.params.data, snakemake.input, snakemake.output.table, snakemake.output.report)
