# Stage 1: the training data set (Hub download or local files) -> filtered, split table.


rule download:
    output:
        RAW_TABLE,
    params:
        hub=config["data"].get("hub", {}),
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
    log:
        f"logs/filter_split/{DATASET}.log",
    script:
        "../scripts/filter_split.py"
