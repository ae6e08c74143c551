"""Rule headline: the report's landing page, the numbers of every stage in a few small tables."""
from protkit.headline import write_headline
from protkit.io.logs import start_job

start_job(snakemake.log[0], snakemake.threads)
write_headline(snakemake.input.get("evaluation"), snakemake.output[0], search_summary=snakemake.input.get("search"),
               finetune_summary=snakemake.input.get("finetune"), stage_metrics=snakemake.input.get("stages", []))
