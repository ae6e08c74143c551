# Config validation, path templates, input functions and resource functions: the one place where
# rules look things up in config.
import os
import re
import sys
from pathlib import Path

from protkit.config import ConfigError, is_int8, validate, variant_of
from protkit.config.checks import finetune_base
from protkit.distill.config import is_staged_variant
from protkit.config.profile import placeholder_warnings, profile_in_use
from protkit.embed.sharding import shard_count
from protkit.io.paths import DataPathError, resolve_data_path
from protkit.sequences.tokenize import token_count

try:
    validate(config)  # the schema, every check across keys and the local files named, before any job is planned
except ConfigError as err:
    raise WorkflowError(str(err))
for line in placeholder_warnings(profile_in_use(sys.argv, os.environ, [Path.cwd(), Path(workflow.basedir)])):
    logger.warning(f"protkit: warning: {line}")

# Every rule that runs protkit uses this environment (envs/protkit.post-deploy.sh installs esm and protkit
# itself into it, from the repository that holds this Snakefile).
PROTKIT_ENV = "../../envs/protkit.yaml"
os.environ.setdefault("PROTKIT_SOURCE", workflow.basedir)

DATASET = config["dataset"]
VARIANTS = list(config["variants"])
# ProtHash 1.0 (family v1) students: four stages, evaluated per stage (rule evaluate_stages), no int8 model
STAGED_VARIANTS = [v for v in VARIANTS if is_staged_variant(config["variants"][v])]
POOLED_VARIANTS = [v for v in VARIANTS if v not in STAGED_VARIANTS]  # ProtHash 0.2 students: int8, evaluate
EMBED = config["embed"]
SEARCH = config["search"]
FINETUNE = config["finetune"]
RES = config["resources"]

OUT = config["outdir"].rstrip("/")  # every result under it (default results/): a demo and a real run apart
BENCHMARKS = OUT + "/benchmarks"  # the rules' benchmark: files
SEQUENCES = f"{OUT}/data/{DATASET}/sequences.parquet"
FILTER_REPORT = f"{OUT}/data/{DATASET}/filter_report.json"
RAW_TABLE = f"resources/datasets/{DATASET}/raw.parquet"
RANDOM_TEACHER = "resources/teachers/{teacher}/weights.safetensors"
CACHE_MANIFEST = OUT + "/teacher/{teacher}/{dataset}/manifest.json"
CACHE_PART = OUT + "/teacher/{teacher}/{dataset}/part-{part}-of-{nparts}/manifest.json"  # teachers.<t>.jobs > 1
MODEL_DIR = OUT + "/models/{variant}"
MODEL_WEIGHTS = MODEL_DIR + "/model.safetensors"
INT8_MARKER = MODEL_DIR + "/int8/quantization.json"
CHECKPOINT_DIR = OUT + "/checkpoints/{variant}"
EVAL_DIR = OUT + "/eval/{variant}"
EVAL_SUMMARY = OUT + "/eval/summary.tsv"
STAGE_EVAL = EVAL_DIR + "/stages.json"  # a v1 variant's per-stage table (rule evaluate_stages)
EMBED_SHARD = OUT + "/embeddings/{model}/{name}/shard-{shard}-of-{nshards}.parquet"
EMBED_OUT = OUT + "/embeddings/{model}/{name}.parquet"
SEARCH_DIR = OUT + "/search/{model}/{name}"
SEARCH_INDEX = SEARCH_DIR + "/index"
SEARCH_HITS = SEARCH_DIR + "/hits-{query}.parquet"
SEARCH_DEDUP = SEARCH_DIR + "/dedup.parquet"
SEARCH_CLUSTERS = SEARCH_DIR + "/clusters.parquet"
SEARCH_SUMMARY = OUT + "/search/summary.tsv"
FINETUNE_DIR = OUT + "/finetune/{model}/{task}"
FINETUNE_METRICS = FINETUNE_DIR + "/metrics.json"
FINETUNE_SUMMARY = OUT + "/finetune/summary.tsv"
FINETUNE_CURVES = OUT + "/finetune/learning_curves.png"


wildcard_constraints:
    variant="|".join(map(re.escape, VARIANTS)) if VARIANTS else "$^",
    teacher="[A-Za-z0-9_.-]+",
    dataset="[A-Za-z0-9_.-]+",
    model="[A-Za-z0-9_.-]+",
    name="[A-Za-z0-9_.-]+",
    query="[A-Za-z0-9_.-]+",
    task="[A-Za-z0-9_.-]+",
    shard=r"\d+",
    nshards=r"\d+",
    part=r"\d+",
    nparts=r"\d+",


localrules:
    all,
    data,
    teacher_caches,
    models,
    evaluation,
    embeddings,
    download,
    random_teacher,
    eval_summary,
    embed_gather,
    search_summary,
    search,
    finetune_summary,
    fine_tuning,


# --- look-ups ---------------------------------------------------------------------------------
def used_teachers():
    return sorted({v["teacher"] for v in config["variants"].values()})


def cache_manifest(teacher):
    return CACHE_MANIFEST.format(teacher=teacher, dataset=DATASET)


def variant_teacher(wildcards):
    return config["variants"][wildcards.variant]["teacher"]


def variant_teacher_config(wildcards):
    return teacher_settings(variant_teacher(wildcards))


def variant_cache(wildcards):
    return cache_manifest(variant_teacher(wildcards))


def teacher_weights_spec(teacher):
    """What protkit loads: a preset name (Hub), a local path, or the random teacher file."""
    weights = config["teachers"][teacher]["weights"]
    return RANDOM_TEACHER.format(teacher=teacher) if weights == "random" else weights


def teacher_settings(teacher):
    """A teacher's config without ``jobs``: how many jobs build its cache changes no number in it."""
    return {k: v for k, v in config["teachers"][teacher].items() if k != "jobs"}


def teacher_config(wildcards):
    return teacher_settings(wildcards.teacher)


def teachers_pattern(scattered):
    """Wildcard pattern of the teachers whose cache is built by several jobs (or by one)."""
    names = [t for t, c in config["teachers"].items() if (c["jobs"] > 1) == scattered]
    return "|".join(map(re.escape, names)) if names else "$^"


def cache_parts(wildcards):
    """The part manifests of a cache built by teachers.<t>.jobs jobs."""
    n = config["teachers"][wildcards.teacher]["jobs"]
    return expand(CACHE_PART, teacher=wildcards.teacher, dataset=wildcards.dataset, part=range(n), nparts=n)


def cache_part(wildcards):
    return (int(wildcards.part), int(wildcards.nparts))


def teacher_random_config(wildcards):
    return config["teachers"][wildcards.teacher]["random"]


def teacher_weights(wildcards):
    return teacher_weights_spec(wildcards.teacher)


def variant_config(wildcards):
    return config["variants"][wildcards.variant]


def variant_teacher_spec(wildcards):
    """The teacher a v1 variant trains beside (training.stage_targets: teacher): its settings with the
    weights as protkit loads them; None for every other variant (their distill jobs never run it)."""
    variant = config["variants"][wildcards.variant]
    if not is_staged_variant(variant) or (variant.get("training") or {}).get("stage_targets") != "teacher":
        return None
    return {**variant_teacher_config(wildcards), "weights": variant_teacher_weights(wildcards)}


def teacher_weight_files(teacher):
    """Local weight files are inputs (a change reruns what uses them); Hub presets are not."""
    spec = teacher_weights_spec(teacher)
    return [spec] if spec.startswith("resources/") or os.path.exists(spec) else []


def teacher_weights_input(wildcards):
    return teacher_weight_files(wildcards.teacher)


def variant_teacher_weights(wildcards):
    return teacher_weights_spec(variant_teacher(wildcards))


def filter_inputs(wildcards):
    data = config["data"]
    if data["source"] == "hub":
        return [RAW_TABLE]
    return [str(data_path(p)) for p in data["paths"]]


def embed_file(name):
    """A file of embed.inputs, or of search.queries (embedded the same way)."""
    files = {**SEARCH["queries"], **EMBED["inputs"]}
    return str(data_path(files[name]))


def embed_input_fasta(wildcards):
    return embed_file(wildcards.name)


def data_path(spec):
    """A configured input file (``package:relative/path`` resolved in the installed package)."""
    try:
        return resolve_data_path(spec)
    except DataPathError as err:
        raise WorkflowError(str(err))


def teacher_max_length():
    """Tokens per sequence in the teacher cache: data.max_length residues plus CLS and EOS."""
    return token_count(config["data"]["max_length"])


def embed_model_inputs(wildcards):
    variant = variant_of(wildcards.model)
    files = [MODEL_WEIGHTS.format(variant=variant)]
    if is_int8(wildcards.model):
        files.append(INT8_MARKER.format(variant=variant))
    return files


def embed_model_dir(wildcards):
    return MODEL_DIR.format(variant=variant_of(wildcards.model))


def embed_model_is_int8(wildcards):
    return is_int8(wildcards.model)


def embed_shard_count(name):
    """Jobs embedding one file: one per embed.residues_per_shard residues, at most embed.shards."""
    return shard_count(embed_file(name), EMBED["shards"], EMBED["residues_per_shard"])


def embed_shards(wildcards):
    n = embed_shard_count(wildcards.name)
    return expand(EMBED_SHARD, model=wildcards.model, name=wildcards.name, shard=range(n), nshards=n)


def embedding_targets():
    return expand(EMBED_OUT, model=EMBED["models"], name=list(EMBED["inputs"]))


def query_embeddings(wildcards):
    """The embeddings of a search.queries file (embedded by the embed rules like an input)."""
    return EMBED_OUT.format(model=wildcards.model, name=wildcards.query)


def search_clusters():
    """Whether the search stage clusters (search.cluster_k or search.cluster_threshold set)."""
    return SEARCH["cluster_k"] is not None or SEARCH["cluster_threshold"] is not None


def search_outputs():
    """Index, hits, dedup, clusters and map (SEARCH_MAP, search.smk) of every embedded input, per
    embed.models model."""
    pairs = [(m, n) for m in EMBED["models"] for n in EMBED["inputs"]]
    files = [SEARCH_INDEX.format(model=m, name=n) for m, n in pairs]
    files += [SEARCH_HITS.format(model=m, name=n, query=q) for m, n in pairs for q in SEARCH["queries"]]
    if SEARCH["dedup_threshold"] is not None:
        files += [SEARCH_DEDUP.format(model=m, name=n) for m, n in pairs]
    if search_clusters():
        files += [SEARCH_CLUSTERS.format(model=m, name=n) for m, n in pairs]
    files += [SEARCH_MAP.format(model=m, name=n) for m, n in pairs]
    return files


def search_map_inputs(wildcards):
    """A map's embeddings, and their clusters when the search stage clusters."""
    inputs = {"embeddings": EMBED_OUT.format(model=wildcards.model, name=wildcards.name)}
    if search_clusters():
        inputs["clusters"] = SEARCH_CLUSTERS.format(model=wildcards.model, name=wildcards.name)
    return inputs


def search_targets():
    return [SEARCH_SUMMARY] if EMBED["models"] and EMBED["inputs"] else []


def finetune_files(task):
    """A finetune task's train and test files (test None when not configured)."""
    entry = FINETUNE[task]
    return data_path(entry["train"]), data_path(entry["test"]) if entry.get("test") else None


def finetune_absent(task):
    """Why an optional finetune task is skipped (a file is absent), else None."""
    train, test = finetune_files(task)
    absent = [str(f) for f in (train, test) if f is not None and not os.path.exists(f)]
    return f"skipped: {' and '.join(absent)} absent (optional task)" if absent and FINETUNE[task].get("optional") else None


def finetune_tasks():
    """The finetune tasks that run (an optional task whose files are absent is skipped)."""
    return [task for task in FINETUNE if finetune_absent(task) is None]


def finetune_inputs(wildcards):
    """The base model's files (a variant's fp32 weights, or a local teacher weights file), train and test."""
    train, test = finetune_files(wildcards.task)
    model = FINETUNE[wildcards.task]["model"]
    if finetune_base(config, model) == "variant":
        base = [MODEL_WEIGHTS.format(variant=model)]
    else:
        base = teacher_weight_files(model)
    return {"base": base, "train": str(train), **({"test": str(test)} if test else {})}


def finetune_model(wildcards):
    """The base model as protkit finetune --model takes it: a student directory or the teacher's weights."""
    model = FINETUNE[wildcards.task]["model"]
    if finetune_base(config, model) == "variant":
        return MODEL_DIR.format(variant=model)
    return teacher_weights_spec(model)


def finetune_metrics():
    return {task: FINETUNE_METRICS.format(model=FINETUNE[task]["model"], task=task) for task in finetune_tasks()}


def finetune_targets():
    return [FINETUNE_SUMMARY, FINETUNE_CURVES] if FINETUNE else []


def report_targets():
    """The report's landing page (rule headline, HEADLINE in report.smk)."""
    return [HEADLINE]


def headline_inputs(wildcards):
    """The summaries the landing page reads: the evaluation's (and each v1 variant's per-stage table), and
    search's and fine-tuning's when they run."""
    inputs = {"evaluation": EVAL_SUMMARY} if POOLED_VARIANTS else {}
    if STAGED_VARIANTS:
        inputs["stages"] = expand(STAGE_EVAL, variant=STAGED_VARIANTS)
    if search_targets():
        inputs["search"] = SEARCH_SUMMARY
    if finetune_targets():
        inputs["finetune"] = FINETUNE_SUMMARY
    return inputs


def all_targets():
    return [
        SEQUENCES,
        *[cache_manifest(t) for t in used_teachers()],
        *expand(MODEL_WEIGHTS, variant=VARIANTS),
        *expand(INT8_MARKER, variant=POOLED_VARIANTS),
        *([EVAL_SUMMARY] if POOLED_VARIANTS else []),
        *expand(STAGE_EVAL, variant=STAGED_VARIANTS),
        *embedding_targets(),
        *search_targets(),
        *finetune_targets(),
        *report_targets(),
    ]


# --- resources ----------------------------------------------------------------------------------
def gpu_resources():
    """gpu / gpu_model for GPU rules, from config.resources (none when gpu is 0)."""
    res = {}
    if RES["gpu"] > 0:
        res["gpu"] = RES["gpu"]
        if RES["gpu_model"]:
            res["gpu_model"] = RES["gpu_model"]
    return res


def input_mb(input):
    return sum(os.path.getsize(f) for f in input if os.path.isfile(f)) / 1e6


def gpu_mem_mb(wildcards, input, attempt):
    """Base memory plus 4x the input size, doubled on each retry (an OOM kill asks for more)."""
    return int((RES["mem_mb_base"] + 4 * input_mb(input)) * 2 ** (attempt - 1))


def gpu_runtime(wildcards, input, attempt):
    """Minutes: base plus 1 min per 10 MB of input, doubled on each retry."""
    return int((RES["runtime_base"] + input_mb(input) / 10) * 2 ** (attempt - 1))


def shard_mem_mb(wildcards, input, attempt):
    """Like gpu_mem_mb, for the shard's part of its FASTA file (the model counted whole)."""
    size = input_mb(input.model) + input_mb([input.fasta]) / int(wildcards.nshards)
    return int((RES["mem_mb_base"] + 4 * size) * 2 ** (attempt - 1))


def shard_runtime(wildcards, input, attempt):
    """Like gpu_runtime, for the shard's part of its FASTA file."""
    size = input_mb(input.model) + input_mb([input.fasta]) / int(wildcards.nshards)
    return int((RES["runtime_base"] + size / 10) * 2 ** (attempt - 1))


def cpu_mem_mb(wildcards, input, attempt):
    return int((2000 + 3 * input_mb(input)) * 2 ** (attempt - 1))


def cpu_runtime(wildcards, input, attempt):
    return int((30 + input_mb(input) / 20) * 2 ** (attempt - 1))


def cache_gather_runtime(wildcards, input, attempt):
    """Minutes: like cpu_runtime, but of the part caches the gather reads (files beside their manifests)."""
    dirs = {os.path.dirname(f) for f in input.parts}
    files = [entry.path for d in dirs if os.path.isdir(d) for entry in os.scandir(d) if entry.is_file()]
    return int((30 + (input_mb(input) + input_mb(files)) / 20) * 2 ** (attempt - 1))
