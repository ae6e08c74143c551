"""Data paths of the configuration: plain files, or files inside an installed Python package."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


class DataPathError(ValueError):
    """A ``package:relative/path`` that names no installed package or no file in it."""


def resolve_data_path(spec: str) -> Path:
    """A file path, or ``package:relative/path`` resolved inside an installed Python package
    (the demo uses ``pyhmmer:tests/data/seqs/938293.PRJEB85.HG003687.faa``)."""
    if ":" in spec and not Path(spec).exists():
        package, _, relative = spec.partition(":")
        if package.isidentifier():
            try:
                root = importlib.resources.files(package)
            except ModuleNotFoundError as err:
                raise DataPathError(f"data path {spec!r}: package {package!r} is not installed") from err
            path = Path(str(root / relative))
            if not path.exists():
                raise DataPathError(f"data path {spec!r}: {relative} not found in package {package}")
            return path
    return Path(spec)


def local_model_path(model: str | None) -> str | None:
    """A model given as a local file or directory, as an absolute path; None for a Hub id, a preset
    name or nothing. Embeddings record it, so an index built from them finds the model from anywhere."""
    return str(Path(model).resolve()) if model and Path(model).exists() else None
