# Stage 5: evaluation on the held-out split: cosine to the teacher (fp32 and int8), baselines,
# neighbour agreement, throughput; per-variant report and a summary across variants.


rule evaluate:
    input:
        sequences=SEQUENCES,
        cache=variant_cache,
        weights=MODEL_WEIGHTS,
        int8=INT8_MARKER,
    output:
        metrics=EVAL_DIR + "/metrics.json",
        report=EVAL_DIR + "/report.md",
        histogram=report(
            EVAL_DIR + "/cosine_histogram.png",
            caption="../report/cosine_histogram.rst",
            category="Per variant",
            subcategory="{variant}",
        ),
        by_length=report(
            EVAL_DIR + "/cosine_vs_length.png",
            caption="../report/cosine_vs_length.rst",
            category="Per variant",
            subcategory="{variant}",
        ),
        throughput=report(
            EVAL_DIR + "/throughput.png",
            caption="../report/throughput.rst",
            category="Per variant",
            subcategory="{variant}",
        ),
    params:
        teacher_weights=variant_teacher_weights,
        teacher=variant_teacher_config,
        settings=config["evaluate"],
        variant=variant_config,
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    log:
        "logs/evaluate/{variant}.log",
    benchmark:
        "results/benchmarks/evaluate/{variant}.tsv"
    script:
        "../scripts/evaluate.py"


rule eval_summary:
    input:
        expand(EVAL_DIR + "/metrics.json", variant=VARIANTS),
    output:
        table=report(EVAL_SUMMARY, caption="../report/summary_table.rst", category="Summary"),
        plot=report("results/eval/summary.png", caption="../report/summary_plot.rst", category="Summary"),
    log:
        "logs/evaluate/summary.log",
    script:
        "../scripts/eval_summary.py"
