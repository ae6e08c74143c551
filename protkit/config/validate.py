"""The workflow configuration: read, checked against the schema (defaults filled in), then checked
across keys (:mod:`protkit.config.checks`), with errors that name the key. The workflow runs this
when Snakemake loads the configuration, so ``snakemake -n`` refuses a bad key before any job runs."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml

from protkit.config.checks import cross_checks
from protkit.config.inputs import input_problems

SCHEMA_FILE = "schema.yaml"  # inside this package, so that an installed protkit finds it


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def schema_path() -> Path:
    """The configuration schema (``protkit/config/schema.yaml``)."""
    return Path(str(importlib.resources.files("protkit.config").joinpath(SCHEMA_FILE)))


def load_schema() -> dict:
    return yaml.safe_load(schema_path().read_text(encoding="utf-8"))


def validate(config: dict, check_files: bool = True) -> dict:
    """Validate ``config`` in place (filling schema defaults), check it across keys and (with
    ``check_files``) that the local files it names exist, relative to the working directory.

    Raises ConfigError listing every problem as ``key: message``.
    """
    import jsonschema
    from snakemake.utils import validate as snakemake_validate

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  {_key(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    snakemake_validate(config, str(schema_path()), set_default=True)  # fills defaults
    problems = cross_checks(config)
    if check_files and not problems:
        problems = input_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def load(path: str | Path) -> dict:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return validate(config)
