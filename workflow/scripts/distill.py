"""Rule distill: train one ProtHash variant from the teacher cache (resumes from checkpoints)."""
from pathlib import Path

from protkit.distill import distill_from_cache
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
distill_from_cache(
    snakemake.input.sequences,
    Path(snakemake.input.cache).parent,
    snakemake.params.variant,
    Path(snakemake.output.weights).parent,
    snakemake.params.checkpoints,
    snakemake.params.tensorboard,
    snakemake.params.device,
    variant_name=snakemake.wildcards.variant,
    teacher=snakemake.params.teacher,  # runs beside a v1 student with training.stage_targets: teacher
)
