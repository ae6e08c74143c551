"""Rules teacher_cache and teacher_cache_part: every kept sequence (of one part) through the teacher
once -> pooled vector shards, and ProtHash 1.0's stage targets when teachers.<t>.stage_layers is set."""
from protkit.data import read_dataset
from protkit.io.logs import start_job
from protkit.teacher import build_cache, teacher_from_config
from protkit.teacher.stage_targets import planned_stage_layers

start_job(snakemake.log[0], snakemake.threads)
teacher = snakemake.params.teacher
model, weights_sha256 = teacher_from_config(
    snakemake.params.weights, random=teacher.get("random"), device=snakemake.params.device, dtype=teacher["precision"]
)
stages = planned_stage_layers(teacher.get("stage_layers"), snakemake.params.weights, model.config.n_layers)
build_cache(
    model,
    read_dataset(snakemake.input.sequences),
    snakemake.output[0].rsplit("/", 1)[0],
    weights_sha256=weights_sha256,
    teacher_name=snakemake.wildcards.teacher,
    dataset=snakemake.wildcards.dataset,
    max_length=snakemake.params.max_length,
    max_tokens_per_batch=teacher["max_tokens_per_batch"],
    poolings=teacher["poolings"],
    store_dtype=teacher["store_dtype"],
    tokens=teacher["tokens"],
    shard_size=teacher["shard_size"],
    part=snakemake.params.get("part"),  # (p, n) in rule teacher_cache_part
    stage_layers=stages or None, stage_tokens=bool(stages), logits=bool(stages),
)
