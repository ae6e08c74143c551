# Stage 8: fine-tuning on labels (finetune: section): per task, its base model (a variant's fp32
# student or a teacher) trained with a task head -> results/finetune/{model}/{task}/ (a Hugging Face
# model directory with metrics.json); a summary across tasks with learning curves for the report.
# The rule calls the function `protkit finetune` calls.


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        metrics=FINETUNE_METRICS,
        weights=FINETUNE_DIR + "/model.safetensors",
    params:
        task=lambda wildcards: FINETUNE[wildcards.task],
        model=finetune_model,
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/finetune/{model}/{task}.log",
    benchmark:
        BENCHMARKS + "/finetune/{model}/{task}.tsv"
    script:
        "../scripts/finetune.py"


rule finetune_summary:
    input:
        lambda wildcards: finetune_metrics().values(),
    output:
        table=report(FINETUNE_SUMMARY, caption="../report/finetune_summary.rst", category="Fine-tuning"),
        curves=report(FINETUNE_CURVES, caption="../report/learning_curves.rst", category="Fine-tuning"),
    params:
        ran=lambda wildcards: {t: (FINETUNE[t]["model"], path) for t, path in finetune_metrics().items()},
        skipped={t: (FINETUNE[t]["model"], finetune_absent(t)) for t in FINETUNE if finetune_absent(t)},
    conda:
        PROTKIT_ENV
    log:
        "logs/finetune/summary.log",
    script:
        "../scripts/finetune_summary.py"
