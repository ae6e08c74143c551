# Stage 7: search, near-duplicates and clusters on the embeddings of every embed.inputs file, per
# embed.models model. search.queries files are embedded by the stage-6 rules like inputs.


rule search_index:
    input:
        EMBED_OUT,
    output:
        directory(SEARCH_INDEX),
    params:
        argv=lambda wildcards, input, output: ["index", "--embeddings", input[0], "--output", output[0],
                                                "--pooling", SEARCH["pooling"], "--kind", SEARCH["index_kind"]],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    log:
        "logs/search/{model}/{name}-index.log",
    script:
        "../scripts/protkit_command.py"


rule search_queries:
    input:
        index=SEARCH_INDEX,
        queries=lambda wildcards: EMBED_OUT.format(model=wildcards.model, name=wildcards.query),
    output:
        SEARCH_HITS,
    params:
        argv=lambda wildcards, input, output: ["search", "--index", input.index, "--query", input.queries,
                                                "--output", output[0], "--k", str(SEARCH["k"]),
                                                *search_min_score_args()],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    log:
        "logs/search/{model}/{name}-hits-{query}.log",
    script:
        "../scripts/protkit_command.py"


rule dedup:
    input:
        EMBED_OUT,
    output:
        SEARCH_DEDUP,
    params:
        argv=lambda wildcards, input, output: ["dedup", "--embeddings", input[0], "--output", output[0],
                                                "--pooling", SEARCH["pooling"],
                                                "--threshold", str(SEARCH["dedup_threshold"])],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    log:
        "logs/search/{model}/{name}-dedup.log",
    script:
        "../scripts/protkit_command.py"


rule cluster:
    input:
        EMBED_OUT,
    output:
        SEARCH_CLUSTERS,
    params:
        argv=lambda wildcards, input, output: ["cluster", "--embeddings", input[0], "--output", output[0],
                                                "--pooling", SEARCH["pooling"], *cluster_args()],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    log:
        "logs/search/{model}/{name}-cluster.log",
    script:
        "../scripts/protkit_command.py"


rule search_summary:
    input:
        search_outputs(),
    output:
        report(SEARCH_SUMMARY, caption="../report/search_summary.rst", category="Search"),
    log:
        "logs/search/summary.log",
    script:
        "../scripts/search_summary.py"
