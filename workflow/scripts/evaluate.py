"""Rule evaluate: held-out cosine to the teacher (fp32, int8, baselines), neighbour recall and LSH
agreement, probes, throughput; then metrics.json, report.md and the plots."""
from pathlib import Path

from protkit.evaluate import evaluate_variant, write_report
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
settings, teacher = snakemake.params.settings, snakemake.params.teacher
result = evaluate_variant(
    snakemake.input.sequences,
    Path(snakemake.input.cache).parent,
    Path(snakemake.input.weights).parent,
    Path(snakemake.input.int8).parent,
    snakemake.params.teacher_weights,
    poolings=settings["poolings"],
    max_tokens=settings["max_tokens"],
    device=snakemake.params.device,
    untrained_seed=snakemake.params.variant.get("training", {}).get("seed", 0),
    variant=snakemake.wildcards.variant,
    max_sequences=settings["max_sequences"],
    throughput_sequences=settings["throughput_sequences"],
    teacher_random=teacher.get("random"),
    teacher_dtype=teacher["precision"],
    probes=snakemake.params.probes,
)
write_report(result, Path(snakemake.output.metrics).parent)
