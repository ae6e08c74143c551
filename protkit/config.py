"""Workflow configuration: schema validation with errors that name the key, and look-ups."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
INT8_SUFFIX = "-int8"


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(schema_path).read_text())


def validate(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (filling schema defaults) and check cross-references.

    Raises ConfigError listing every problem as ``key: message``.
    """
    import jsonschema
    from snakemake.utils import validate as snakemake_validate

    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  {_key(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    snakemake_validate(config, str(schema_path), set_default=True)  # fills defaults
    _check_references(config)
    return config


def _check_references(config: dict) -> None:
    problems: list[str] = []
    teachers = config["teachers"]
    for name, teacher in teachers.items():
        if teacher["weights"] == "random" and "random" not in teacher:
            problems.append(f"teachers.{name}.random: required when weights is 'random'")
    for name, variant in config["variants"].items():
        if variant["teacher"] not in teachers:
            problems.append(
                f"variants.{name}.teacher: {variant['teacher']!r} is not a key of teachers "
                f"({', '.join(teachers)})"
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
    problems += _search_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


def _search_problems(config: dict) -> list[str]:
    search, embed = config.get("search", {}), config.get("embed", {})
    problems = []
    if search.get("pooling", "mean") not in embed.get("poolings", ["mean"]):
        problems.append(f"search.pooling: {search['pooling']!r} is not in embed.poolings ({', '.join(embed['poolings'])})")
    for name in set(search.get("queries", {})) & set(embed.get("inputs", {})):
        problems.append(f"search.queries.{name}: the name is taken by embed.inputs.{name}; rename one")
    if search.get("cluster_k") is not None and search.get("cluster_threshold") is not None:
        problems.append("search: give at most one of cluster_k and cluster_threshold")
    return problems


def load(path: str | Path) -> dict:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return validate(config)


def variant_of(model: str) -> str:
    """``V-int8`` -> ``V``; ``V`` -> ``V``."""
    return model[: -len(INT8_SUFFIX)] if model.endswith(INT8_SUFFIX) else model


def is_int8(model: str) -> bool:
    return model.endswith(INT8_SUFFIX)


def resolve_data_path(spec: str) -> Path:
    """A file path, or ``package:relative/path`` resolved inside an installed Python package
    (the demo uses ``pyhmmer:tests/data/seqs/938293.PRJEB85.HG003687.faa``)."""
    if ":" in spec and not Path(spec).exists():
        package, _, relative = spec.partition(":")
        if package.isidentifier():
            try:
                root = importlib.resources.files(package)
            except ModuleNotFoundError as err:
                raise ConfigError(f"data path {spec!r}: package {package!r} is not installed") from err
            path = Path(str(root / relative))
            if not path.exists():
                raise ConfigError(f"data path {spec!r}: {relative} not found in package {package}")
            return path
    return Path(spec)
