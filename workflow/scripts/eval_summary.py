"""Rule eval_summary: all variants side by side (summary.tsv + plot)."""
from protkit.logs import start_job
from protkit.report import summarize

start_job(snakemake.log[0], snakemake.threads)
summarize(snakemake.input, snakemake.output.table, snakemake.output.plot)
