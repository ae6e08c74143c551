# Stage 5: evaluation on the held-out split: cosine to the teacher (fp32 and int8), baselines,
# neighbour agreement (exact and LSH codes), probes, throughput; per-variant report and a summary
# across variants. ProtHash 1.0 (v1) variants: per-stage residue cosine, CKA and MLM agreement
# (rule evaluate_stages), shown on the report's landing page.
from protkit.evaluate.probes import probe_specs

PROBES = probe_specs(config["probes"])  # already checked with the configuration (common.smk)


def probe_inputs(wildcards):
    """Probe files are inputs when present; an absent optional probe is skipped (noted in the report),
    an absent required one is left to snakemake to report as a missing input."""
    return list(dict.fromkeys(str(spec.path) for spec in PROBES if spec.path.exists() or not spec.optional))


rule evaluate:
    input:
        sequences=SEQUENCES,
        cache=variant_cache,
        weights=MODEL_WEIGHTS,
        int8=INT8_MARKER,
        probes=probe_inputs,
    output:
        metrics=EVAL_DIR + "/metrics.json",
        report=EVAL_DIR + "/report.md",
        histogram=report(
            EVAL_DIR + "/cosine_histogram.png",
            caption="../report/cosine_histogram.rst",
            category="2. Per variant",
            subcategory="{variant}",
        ),
        by_length=report(
            EVAL_DIR + "/cosine_vs_length.png",
            caption="../report/cosine_vs_length.rst",
            category="2. Per variant",
            subcategory="{variant}",
        ),
        throughput=report(
            EVAL_DIR + "/throughput.png",
            caption="../report/throughput.rst",
            category="2. Per variant",
            subcategory="{variant}",
        ),
        recall=report(
            EVAL_DIR + "/recall_vs_bits.png",
            caption="../report/recall_vs_bits.rst",
            category="2. Per variant",
            subcategory="{variant}",
        ),
        probes=report(
            EVAL_DIR + "/probes.tsv",
            caption="../report/probes.rst",
            category="2. Per variant",
            subcategory="{variant}",
        ),
    params:
        teacher_weights=variant_teacher_weights,
        teacher=variant_teacher_config,
        settings=config["evaluate"],
        probes=config["probes"],
        variant=variant_config,
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/evaluate/{variant}.log",
    benchmark:
        BENCHMARKS + "/evaluate/{variant}.tsv"
    script:
        "../scripts/evaluate.py"


rule eval_summary:
    input:
        expand(EVAL_DIR + "/metrics.json", variant=POOLED_VARIANTS),
    output:
        table=report(EVAL_SUMMARY, caption="../report/summary_table.rst", category="1. Summary"),
        plot=report(OUT + "/eval/summary.png", caption="../report/summary_plot.rst", category="1. Summary"),
    conda:
        PROTKIT_ENV
    log:
        "logs/evaluate/summary.log",
    script:
        "../scripts/eval_summary.py"


rule evaluate_stages:
    input:
        sequences=SEQUENCES,
        cache=variant_cache,
        weights=MODEL_WEIGHTS,
    output:
        json=STAGE_EVAL,
        md=report(EVAL_DIR + "/stages.md", caption="../report/stages.rst", category="2. Per variant",
                  subcategory="{variant}"),
    params:
        teacher_weights=variant_teacher_weights,
        teacher=variant_teacher_config,
        settings=config["evaluate"],
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/evaluate/{variant}-stages.log",
    benchmark:
        BENCHMARKS + "/evaluate/{variant}-stages.tsv"
    script:
        "../scripts/evaluate_stages.py"
