"""Rule evaluate_stages: a ProtHash 1.0 student against its teacher on held-out proteins, stage by
stage (residue cosine, p05, linear CKA, MLM agreement, pooled cosine, throughput); stages.json and stages.md."""
from pathlib import Path

from protkit.evaluate.stage_run import evaluate_staged_variant
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
settings, teacher = snakemake.params.settings, snakemake.params.teacher
evaluate_staged_variant(
    snakemake.input.sequences,
    Path(snakemake.input.cache).parent,
    Path(snakemake.input.weights).parent,
    Path(snakemake.output.json).parent,
    snakemake.params.teacher_weights,
    teacher_random=teacher.get("random"),
    teacher_dtype=teacher["precision"],
    teacher_layers=snakemake.params.get("teacher_layers"),
    max_tokens=settings["max_tokens"],
    device=snakemake.params.device,
    max_sequences=settings["max_sequences"],
    throughput_sequences=settings["throughput_sequences"],
    variant=snakemake.wildcards.variant,
)
