"""A warning at plan time when the Snakemake profile in use still holds the placeholder values the
shipped ``slurm/config.yaml`` asks the user to edit (the SLURM account), which would otherwise be
found only when the first job is refused by ``sbatch``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import yaml

PLACEHOLDERS = {"slurm_account": "my_account"}  # default-resources keys shipped with a value to replace
PROFILE_FILE = "config.yaml"


def profile_in_use(argv: Sequence[str], environ: dict[str, str], bases: Sequence[Path]) -> Path | None:
    """The profile directory of this Snakemake run (``--profile DIR`` or ``SNAKEMAKE_PROFILE``), when
    it is a directory holding a ``config.yaml`` (a relative one looked up in each of ``bases``)."""
    name = environ.get("SNAKEMAKE_PROFILE")
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--profile="):
            name = arg.split("=", 1)[1]
    if not name:
        return None
    candidates = [Path(name)] if Path(name).is_absolute() else [base / name for base in bases]
    return next((path for path in candidates if (path / PROFILE_FILE).is_file()), None)


def placeholder_warnings(profile: Path | None) -> list[str]:
    """One line per placeholder value still in ``profile``'s ``default-resources`` (none without one)."""
    if profile is None:
        return []
    try:
        settings = yaml.safe_load((profile / PROFILE_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []  # Snakemake itself reports a profile it cannot read
    resources = settings.get("default-resources") or {}
    if not isinstance(resources, dict):
        return []
    return [f"{profile / PROFILE_FILE}: default-resources {key} is still the placeholder {value!r}; set your "
            f"SLURM account (sacctmgr show assoc user={os.environ.get('USER', '$USER')}) or sbatch will refuse "
            "every job" for key, value in PLACEHOLDERS.items() if str(resources.get(key, "")).strip('"') == value]
