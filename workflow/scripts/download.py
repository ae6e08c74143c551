"""Rule download: a Hugging Face dataset -> parquet table (id, sequence)."""
from protkit.data import download_hub_dataset
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
hub = snakemake.params.hub
download_hub_dataset(
    hub["repo_id"], hub["revision"], snakemake.output[0],
    split=hub["split"], id_column=hub["id_column"], sequence_column=hub["sequence_column"],
)
