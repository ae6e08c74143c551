# Stage 2: the teacher (ESMC) embedding cache, computed once per teacher and data set and shared by
# every variant of that teacher.


rule random_teacher:
    output:
        RANDOM_TEACHER,
    params:
        random=teacher_random_config,
    log:
        "logs/random_teacher/{teacher}.log",
    script:
        "../scripts/random_teacher.py"


rule teacher_cache:
    input:
        sequences=SEQUENCES,
        weights=teacher_weights_input,
    output:
        CACHE_MANIFEST,
    params:
        teacher=teacher_config,
        weights=teacher_weights,
        max_length=config["data"]["max_length"] + 2,  # tokens: residues + CLS + EOS
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    log:
        "logs/teacher_cache/{teacher}-{dataset}.log",
    benchmark:
        "results/benchmarks/teacher_cache/{teacher}-{dataset}.tsv"
    script:
        "../scripts/teacher_cache.py"
