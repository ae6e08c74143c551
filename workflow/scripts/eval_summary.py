"""Rule eval_summary: all variants side by side (summary.tsv + plot)."""
from protkit.logs import to_file
from protkit.report import summarize

to_file(snakemake.log[0])
summarize(snakemake.input, snakemake.output.table, snakemake.output.plot)
