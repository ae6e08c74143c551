"""Rule eval_summary: all variants side by side (summary.tsv + plot)."""
from protkit.evaluate import summarize
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
summarize(snakemake.input, snakemake.output.table, snakemake.output.plot)
