# Stage 1: the training data set (Hub download or local files) -> filtered, split table.


rule download:
    output:
        RAW_TABLE,
    params:
        hub=config["data"].get("hub", {}),
    conda:
        PROTKIT_ENV
    log:
        f"logs/download/{DATASET}.log",
    script:
        "../scripts/download.py"


rule filter_split:
    input:
        filter_inputs,
    output:
        table=SEQUENCES,
        report=FILTER_REPORT,
    params:
        data=config["data"],
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        f"logs/filter_split/{DATASET}.log",
    benchmark:
        f"{BENCHMARKS}/filter_split/{DATASET}.tsv"
    script:
        "../scripts/filter_split.py"
