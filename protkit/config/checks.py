"""Checks of the workflow configuration across keys, after the schema: names that must refer to
each other, and every variant's settings as the distill job will read them (architecture, training,
QAT, against its teacher's cache), probes, fine-tuning tasks and the random demo teacher. Each problem is one
``key: message`` line."""

from __future__ import annotations

from pathlib import Path

from protkit.distill.config import CacheFacts, is_staged_variant, variant_settings
from protkit.evaluate.probes import ProbeError, probe_specs
from protkit.finetune.errors import FinetuneError
from protkit.finetune.labels import compile_label_regex, table_separator
from protkit.models.memory import INFERENCE_BYTES_PER_PARAMETER, check_fits
from protkit.models.names import TEACHER_WIDTHS
from protkit.sequences.tokenize import token_count
from protkit.teacher.loading import random_teacher_config
from protkit.teacher.stage_targets import planned_stage_layers

INT8_SUFFIX = "-int8"  # embed.models: a variant's name with this suffix means its int8 model


def variant_of(model: str) -> str:
    """``V-int8`` -> ``V``; ``V`` -> ``V``."""
    return model[: -len(INT8_SUFFIX)] if model.endswith(INT8_SUFFIX) else model


def is_int8(model: str) -> bool:
    return model.endswith(INT8_SUFFIX)


def cross_checks(config: dict) -> list[str]:
    """Every problem of a schema-valid ``config`` (defaults filled in), as ``key: message`` lines."""
    problems = _reference_problems(config) + _search_problems(config)
    if problems:  # later checks look names up
        return problems
    return (_teacher_problems(config) + _variant_problems(config) + _evaluate_problems(config)
            + _probe_problems(config) + _finetune_problems(config))


def _reference_problems(config: dict) -> list[str]:
    problems: list[str] = []
    teachers = config["teachers"]
    for name, teacher in teachers.items():
        if teacher["weights"] == "random" and "random" not in teacher:
            problems.append(f"teachers.{name}.random: required when weights is 'random'")
    for name, variant in config["variants"].items():
        if variant["teacher"] not in teachers:
            problems.append(
                f"variants.{name}.teacher: {variant['teacher']!r} is not a key of teachers ({', '.join(teachers)})"
            )
        if "preset" not in variant and "d_model" not in variant.get("architecture", {}):
            problems.append(f"variants.{name}: give a preset or architecture.d_model")
    if config["data"]["source"] == "hub" and "hub" not in config["data"]:
        problems.append("data.hub: required when data.source is 'hub'")
    if config["data"]["source"] in ("fasta", "parquet") and not config["data"].get("paths"):
        problems.append(f"data.paths: required when data.source is {config['data']['source']!r}")
    for i, model in enumerate(config.get("embed", {}).get("models", [])):
        if variant_of(model) not in config["variants"]:
            problems.append(f"embed.models[{i}]: {model!r} names no variant ({', '.join(config['variants'])})")
        elif is_int8(model) and is_staged_variant(config["variants"][variant_of(model)]):
            problems.append(f"embed.models[{i}]: {model!r}: a ProtHash 1.0 (family v1) student has no int8 model; "
                            f"embed with {variant_of(model)!r}")
    return problems


def _search_problems(config: dict) -> list[str]:
    search, embed = config.get("search", {}), config.get("embed", {})
    problems = []
    if search.get("pooling", "mean") not in embed.get("poolings", ["mean"]):
        problems.append(f"search.pooling: {search['pooling']!r} is not in embed.poolings "
                        f"({', '.join(embed['poolings'])})")
    for name in set(search.get("queries", {})) & set(embed.get("inputs", {})):
        problems.append(f"search.queries.{name}: the name is taken by embed.inputs.{name}; rename one")
    if search.get("cluster_k") is not None and search.get("cluster_threshold") is not None:
        problems.append("search: give at most one of cluster_k and cluster_threshold")
    return problems


def _teacher_problems(config: dict) -> list[str]:
    """The random demo teacher's architecture (the random_teacher job builds it)."""
    problems = []
    for name, teacher in config["teachers"].items():
        if teacher["weights"] != "random":
            continue
        try:
            architecture, _ = random_teacher_config(teacher["random"])
        except (TypeError, ValueError) as err:
            problems.append(f"teachers.{name}.random: {err}")
            continue
        try:
            check_fits(architecture.parameter_count, INFERENCE_BYTES_PER_PARAMETER, f"teachers.{name}.random")
        except ValueError as err:
            problems.append(str(err))
    return problems


def teacher_width(teacher: dict) -> int | None:
    """A teacher's hidden width when the configuration tells it (a released model or the random
    teacher), else None (a weights file: known once it is read)."""
    if teacher["weights"] == "random":
        return int(teacher["random"]["d_model"])
    return TEACHER_WIDTHS.get(teacher["weights"])


def _variant_problems(config: dict) -> list[str]:
    """Each variant's settings as the distill job reads them, against its teacher's cache."""
    problems = []
    for name, variant in config["variants"].items():
        teacher = config["teachers"][variant["teacher"]]
        random_layers = teacher.get("random", {}).get("n_layers") if teacher["weights"] == "random" else None
        layers = planned_stage_layers(teacher.get("stage_layers"), teacher["weights"], random_layers)
        cache = CacheFacts(teacher_dim=teacher_width(teacher), teacher=variant["teacher"],
                           max_length=token_count(config["data"]["max_length"]), poolings=teacher["poolings"],
                           tokens=teacher["tokens"], stage_layers=layers, logits=layers != ())
        try:
            variant_settings(variant, cache, f"variants.{name}")
        except ValueError as err:
            problems.append(str(err))
    return problems


def _evaluate_problems(config: dict) -> list[str]:
    wanted = config["evaluate"]["poolings"]
    problems = []
    for teacher in sorted({v["teacher"] for v in config["variants"].values()}):
        cached = config["teachers"][teacher]["poolings"]
        missing = [p for p in wanted if p not in cached]
        if missing:
            problems.append(f"evaluate.poolings: {', '.join(missing)} not cached by teachers.{teacher} (poolings: "
                            f"{', '.join(cached)})")
    return problems


def _probe_problems(config: dict) -> list[str]:
    try:
        probe_specs(config["probes"])
    except ProbeError as err:
        return [str(err)]
    return []


def finetune_base(config: dict, model: str) -> str | None:
    """``variant`` or ``teacher``: what a finetune task's ``model`` names (None: neither)."""
    if model in config["variants"]:
        return "variant"
    return "teacher" if model in config["teachers"] else None


def _finetune_problems(config: dict) -> list[str]:
    """Each fine-tuning task's base model and label source (the file itself is read by the job)."""
    problems = []
    for name, task in config.get("finetune", {}).items():
        key, model = f"finetune.{name}", task["model"]
        if model in config["variants"] and model in config["teachers"]:
            problems.append(f"{key}.model: {model!r} is both a variant and a teacher; rename one")
        elif is_int8(model) and variant_of(model) in config["variants"]:
            problems.append(f"{key}.model: {model!r} is an int8 model, whose 8-bit weights cannot be trained; "
                            f"fine-tune its fp32 variant {variant_of(model)!r} (and quantize the result if you need)")
        elif model in config["variants"] and is_staged_variant(config["variants"][model]):
            problems.append(f"{key}.model: {model!r} is a ProtHash 1.0 (family v1) student, which protkit does not "
                            "fine-tune yet; fine-tune a ProtHash 0.2 variant or the teacher")
        elif finetune_base(config, model) is None:
            problems.append(f"{key}.model: {model!r} names no variant ({', '.join(config['variants'])}) and no "
                            f"teacher ({', '.join(config['teachers'])})")
        if task.get("test") and task.get("test_fraction", 0) > 0:
            problems.append(f"{key}: give test (a file) or test_fraction (a share of train), not both")
        problems += _label_source_problems(key, task)
    return problems


def _label_source_problems(key: str, task: dict) -> list[str]:
    is_table = table_separator(Path(task["train"])) is not None
    if is_table and not task.get("label_columns"):
        return [f"{key}.label_columns: required for a table ({task['train']}): the column(s) holding the labels"]
    if is_table:
        return []
    if task.get("label_columns"):
        return [f"{key}.label_columns: for tables (.csv, .tsv, .parquet); a FASTA file's labels come from its "
                "headers with label_regex"]
    if task.get("task") == "tokens":
        return [f"{key}.task: tokens reads per-residue labels from a table column, not from FASTA headers"]
    try:
        compile_label_regex(task.get("label_regex"), Path(task["train"]))
    except FinetuneError as err:
        return [f"{key}.label_regex: {str(err).replace('--label-regex', 'label_regex')}"]
    return []
