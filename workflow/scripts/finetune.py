"""Rule finetune: one finetune: task (protkit finetune's settings from the configuration)."""
from pathlib import Path

from protkit.finetune import finetune
from protkit.finetune.config import task_settings
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
test = snakemake.input.get("test")
settings = task_settings(
    snakemake.params.task,
    snakemake.params.model,
    Path(snakemake.input.train),
    Path(test) if test else None,
    Path(snakemake.output.metrics).parent,
    device=snakemake.params.device,
)
finetune(settings)
