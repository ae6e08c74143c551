"""Rule finetune_summary: every finetune: task side by side (summary.tsv + learning curves)."""
from protkit.finetune.report import summarize_finetune
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
summarize_finetune(snakemake.params.ran, snakemake.params.skipped, snakemake.output.table, snakemake.output.curves)
