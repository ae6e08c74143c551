"""Rule filter_split: raw sequences -> filtered, de-duplicated, split table + report."""
from protkit.data import filter_and_split, read_sources, write_dataset
from protkit.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
data = snakemake.params.data
source = "parquet" if data["source"] == "hub" else data["source"]
table, report = filter_and_split(
    read_sources(source, snakemake.input),
    min_length=data["min_length"],
    max_length=data["max_length"],
    overlength=data["overlength"],
    alphabet_policy=data["alphabet_policy"],
    test_fraction=data["test_fraction"],
    salt=data["split_salt"],
)
write_dataset(table, report, snakemake.output.table, snakemake.output.report)
