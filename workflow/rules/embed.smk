# Stage 6: embedding of users' FASTA files, scattered into one job per embed.residues_per_shard
# residues (at most embed.shards) and gathered in FASTA order. A re-run after a crash redoes only the
# missing shards.


rule embed_shard:
    input:
        fasta=embed_input_fasta,
        model=embed_model_inputs,
    output:
        EMBED_SHARD,
    params:
        # Only what shapes a shard: adding an input or a model must not rerun existing shards.
        settings={k: EMBED[k] for k in ("poolings", "max_tokens", "overlength", "store_dtype")},
        model_dir=embed_model_dir,
        int8=embed_model_is_int8,
        device=config["device"],
    threads: RES["cpus_per_gpu_job"]
    resources:
        **gpu_resources(),
        mem_mb=shard_mem_mb,
        runtime=shard_runtime,
    conda:
        PROTKIT_ENV
    log:
        "logs/embed/{model}/{name}-{shard}-of-{nshards}.log",
    benchmark:
        BENCHMARKS + "/embed/{model}/{name}-{shard}-of-{nshards}.tsv"
    script:
        "../scripts/embed_shard.py"


rule embed_gather:
    input:
        embed_shards,
    output:
        EMBED_OUT,
    conda:
        PROTKIT_ENV
    log:
        "logs/embed/{model}/{name}-gather.log",
    script:
        "../scripts/embed_gather.py"
