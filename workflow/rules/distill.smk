# Stage 3: ProtHash distillation from the teacher cache, optional QAT. ProtHash 1.0 (family v1) variants
# train on the cache's stage targets, or with training.stage_targets: teacher beside the teacher.
# Checkpoints go to results/checkpoints/{variant}/, which is not an output, so a killed job re-run
# resumes instead of starting over. Changing one variant's settings reruns only that variant.


rule distill:
    input:
        sequences=SEQUENCES,
        cache=variant_cache,
    output:
        weights=MODEL_WEIGHTS,
        config=MODEL_DIR + "/config.json",
        summary=MODEL_DIR + "/training_summary.json",
    params:
        variant=variant_config,
        teacher=variant_teacher_spec,
        checkpoints=CHECKPOINT_DIR,
        tensorboard=OUT + "/{variant}/tensorboard",
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/distill/{variant}.log",
    benchmark:
        BENCHMARKS + "/distill/{variant}.tsv"
    script:
        "../scripts/distill.py"
