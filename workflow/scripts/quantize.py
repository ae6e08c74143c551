"""Rule quantize: fp32 student -> torchao int8 artifact (results/models/{variant}/int8/)."""
from pathlib import Path

from protkit.io.logs import start_job
from protkit.quantize import quantize_pretrained

start_job(snakemake.log[0], snakemake.threads)
quantize_pretrained(Path(snakemake.input.weights).parent, Path(snakemake.output[0]).parent, snakemake.params.method)
