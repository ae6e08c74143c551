"""Rule evaluate: held-out cosine to the teacher (fp32, int8, baselines), recall, throughput, report."""
from pathlib import Path

from protkit.evaluate import evaluate_variant
from protkit.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
settings, teacher = snakemake.params.settings, snakemake.params.teacher
evaluate_variant(
    snakemake.input.sequences,
    Path(snakemake.input.cache).parent,
    Path(snakemake.input.weights).parent,
    Path(snakemake.input.int8).parent,
    snakemake.params.teacher_weights,
    Path(snakemake.output.metrics).parent,
    poolings=settings["poolings"],
    max_tokens=settings["max_tokens"],
    device=snakemake.params.device,
    untrained_seed=snakemake.params.variant.get("training", {}).get("seed", 0),
    variant=snakemake.wildcards.variant,
    max_sequences=settings["max_sequences"],
    throughput_sequences=settings["throughput_sequences"],
    teacher_random=teacher.get("random"),
    teacher_dtype=teacher["precision"],
)
