# Stage 9: the report's landing page. The numbers of every stage (held-out cosine, speed with the
# backend named, probes, search, fine-tuning) in a few small tables, {outdir}/report/headline.html, read
# from the stage summaries; workflow/report/workflow.rst shows it first in `snakemake --report`.
HEADLINE = OUT + "/report/headline.html"


localrules:
    headline,


rule headline:
    input:
        unpack(headline_inputs),
    output:
        report(HEADLINE, caption="../report/headline.rst", category="1. Summary"),
    conda:
        PROTKIT_ENV
    log:
        "logs/report/headline.log",
    script:
        "../scripts/headline.py"
