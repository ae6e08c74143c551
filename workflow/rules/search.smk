# Stage 7: search, near-duplicates and clusters on the embeddings of every embed.inputs file, per
# embed.models model. search.queries files are embedded by the stage-6 rules like inputs. Each rule
# calls the protkit function its command (protkit index, search, dedup, cluster) calls. search_map draws
# a 2-D map (PCA) of each input's proteins, coloured by cluster, for the report.
SEARCH_MAP = SEARCH_DIR + "/map.png"


rule search_index:
    input:
        EMBED_OUT,
    output:
        directory(SEARCH_INDEX),
    params:
        pooling=SEARCH["pooling"],
        kind=SEARCH["index_kind"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/search/{model}/{name}-index.log",
    benchmark:
        BENCHMARKS + "/search/{model}/{name}-index.tsv"
    script:
        "../scripts/search_index.py"


rule search_queries:
    input:
        index=SEARCH_INDEX,
        queries=query_embeddings,
    output:
        SEARCH_HITS,
    params:
        k=SEARCH["k"],
        min_score=SEARCH["min_score"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/search/{model}/{name}-hits-{query}.log",
    benchmark:
        BENCHMARKS + "/search/{model}/{name}-hits-{query}.tsv"
    script:
        "../scripts/search_queries.py"


rule dedup:
    input:
        EMBED_OUT,
    output:
        SEARCH_DEDUP,
    params:
        pooling=SEARCH["pooling"],
        threshold=SEARCH["dedup_threshold"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/search/{model}/{name}-dedup.log",
    benchmark:
        BENCHMARKS + "/search/{model}/{name}-dedup.tsv"
    script:
        "../scripts/dedup.py"


rule cluster:
    input:
        EMBED_OUT,
    output:
        SEARCH_CLUSTERS,
    params:
        pooling=SEARCH["pooling"],
        k=SEARCH["cluster_k"],
        threshold=SEARCH["cluster_threshold"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/search/{model}/{name}-cluster.log",
    benchmark:
        BENCHMARKS + "/search/{model}/{name}-cluster.tsv"
    script:
        "../scripts/cluster.py"


rule search_map:
    input:
        unpack(search_map_inputs),
    output:
        report(
            SEARCH_MAP,
            caption="../report/search_map.rst",
            category="3. Search",
            subcategory="{model}",
            labels={"model": "{model}", "input": "{name}"},
        ),
    params:
        pooling=SEARCH["pooling"],
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/search/{model}/{name}-map.log",
    script:
        "../scripts/search_map.py"


rule search_summary:
    input:
        search_outputs(),
    output:
        report(SEARCH_SUMMARY, caption="../report/search_summary.rst", category="3. Search"),
    conda:
        PROTKIT_ENV
    log:
        "logs/search/summary.log",
    script:
        "../scripts/search_summary.py"
