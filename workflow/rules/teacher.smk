# Stage 2: the teacher (ESMC) embedding cache, computed once per teacher and data set and shared by
# every variant of that teacher. With teachers.<t>.jobs: N > 1 it is built by N GPU jobs, one per part
# of the sequences (each resumes on its own), and gathered into the same cache one job would write.


rule random_teacher:
    output:
        RANDOM_TEACHER,
    params:
        random=teacher_random_config,
    conda:
        PROTKIT_ENV
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
    wildcard_constraints:
        teacher=teachers_pattern(scattered=False),
    params:
        teacher=teacher_config,
        weights=teacher_weights,
        max_length=teacher_max_length(),
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/teacher_cache/{teacher}-{dataset}.log",
    benchmark:
        BENCHMARKS + "/teacher_cache/{teacher}-{dataset}.tsv"
    script:
        "../scripts/teacher_cache.py"


use rule teacher_cache as teacher_cache_part with:
    output:
        CACHE_PART,
    wildcard_constraints:
        teacher=teachers_pattern(scattered=True),
    params:
        part=cache_part,  # (p, n); the other params as in teacher_cache
    log:
        "logs/teacher_cache/{teacher}-{dataset}-{part}-of-{nparts}.log",
    benchmark:
        BENCHMARKS + "/teacher_cache/{teacher}-{dataset}-{part}-of-{nparts}.tsv"


rule teacher_cache_gather:
    input:
        sequences=SEQUENCES,
        parts=cache_parts,
    output:
        CACHE_MANIFEST,
    wildcard_constraints:
        teacher=teachers_pattern(scattered=True),
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cache_gather_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/teacher_cache/{teacher}-{dataset}-gather.log",
    benchmark:
        BENCHMARKS + "/teacher_cache/{teacher}-{dataset}-gather.tsv"
    script:
        "../scripts/teacher_cache_gather.py"
