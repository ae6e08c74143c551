"""Checks of the local files a configuration names, at plan time: a teacher's weights file, the data
files, the files to embed, search, probe and fine-tune on. A missing file fails ``snakemake -n``
naming its key, not a GPU job hours later. Relative paths are relative to the working directory
(where Snakemake runs); optional probes and fine-tuning tasks may lack their files (they are skipped,
with a note)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from protkit.io.paths import DataPathError, resolve_data_path
from protkit.models.names import TEACHER_WIDTHS

RANDOM_WEIGHTS = "random"  # teachers.<t>.weights of the seeded demo teacher (written by a rule)


def named_files(config: dict) -> Iterator[tuple[str, str, bool]]:
    """``(key, path spec, optional)`` of every local input file ``config`` names."""
    data = config["data"]
    if data["source"] in ("fasta", "parquet"):
        for i, spec in enumerate(data.get("paths", [])):
            yield f"data.paths[{i}]", spec, False
    for name, teacher in config["teachers"].items():
        if teacher["weights"] not in (RANDOM_WEIGHTS, *TEACHER_WIDTHS):
            yield f"teachers.{name}.weights", teacher["weights"], False
    for name, probe in config.get("probes", {}).items():
        yield f"probes.{name}.path", probe["path"], bool(probe.get("optional"))
    for section, files in (("embed.inputs", config.get("embed", {}).get("inputs", {})),
                           ("search.queries", config.get("search", {}).get("queries", {}))):
        for name, spec in files.items():
            yield f"{section}.{name}", spec, False
    for name, task in config.get("finetune", {}).items():
        for key in ("train", "test"):
            if task.get(key):
                yield f"finetune.{name}.{key}", task[key], bool(task.get("optional"))


def input_problems(config: dict) -> list[str]:
    """A ``key: message`` line per named file that does not exist (optional ones left out)."""
    problems = []
    for key, spec, optional in named_files(config):
        try:
            path = resolve_data_path(spec)
        except DataPathError as err:
            if not optional:
                problems.append(f"{key}: {err}")
            continue
        if not path.exists() and not optional:
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            problems.append(f"{key}: {spec} does not exist{where}")
    return problems
