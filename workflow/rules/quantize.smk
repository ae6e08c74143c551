# Stage 4: int8 quantization (torchao) of each trained student.


rule quantize:
    input:
        weights=MODEL_WEIGHTS,
        config=MODEL_DIR + "/config.json",
    output:
        INT8_MARKER,
    params:
        method=config["quantize"]["method"],
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/quantize/{variant}.log",
    script:
        "../scripts/quantize.py"
