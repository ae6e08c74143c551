"""The model behind an index or codes file: what they record of it, and finding it again to embed a
FASTA query (``protkit search --query queries.fasta``).

The record names the model by content, ``fingerprint`` (the sha256 of its weights: the embeddings
file's ``model_fingerprint``), and by place: ``path`` (absolute) and ``relative_path`` (from the
index directory, or from the codes file's directory), so an index moved together with its model, or
searched from another working directory, still finds it. ``model`` is the name the embeddings were
made with (a Hub id or preset name when no local ``path`` is known).

A FASTA query is embedded with, in order: ``--model``; the model at the relative path; at the
absolute path; the recorded name when no path was recorded (and for indexes of older protkit
versions). The model used must have the recorded fingerprint: a ``--model`` with another one is
refused naming both, and a model found at none of the places is an error naming the fingerprint
and asking for ``--model``.
"""

from __future__ import annotations

import os
from pathlib import Path

from protkit.io.paths import local_model_path
from protkit.search.vectors import SearchError

RECORDED_SETTINGS = ("model_kind", "int8", "quantization", "precision", "max_length")


def model_record(meta: dict, base: str | Path) -> dict:
    """What an index (``base``: its directory) or codes file (``base``: its directory) records of the
    model of an embeddings file with metadata ``meta``."""
    path = meta.get("model_path") or local_model_path(meta.get("model"))
    try:
        relative = os.path.relpath(path, Path(base).resolve()) if path else None
    except ValueError:  # another drive (Windows)
        relative = None
    return {"model": meta.get("model"), "fingerprint": meta.get("model_fingerprint"), "path": path,
            "relative_path": relative, **{k: meta.get(k) for k in RECORDED_SETTINGS}}


def model_places(record: dict, base: Path) -> list[str]:
    """Where to look for the recorded model, in order (see the module docstring)."""
    if not (record.get("path") or record.get("relative_path")):  # a Hub id or preset, or an older index
        return [record["model"]] if record.get("model") else []
    # resolved as when recorded (symlinks followed), then ".." taken textually
    relative = os.path.normpath(base.resolve() / record["relative_path"]) if record.get("relative_path") else None
    places = [relative, record.get("path")]
    return list(dict.fromkeys(p for p in places if p))


def describe_model(fingerprint: str | None, int8: bool) -> str:
    """``model 1a2b3c4d5e6f (int8)`` for messages."""
    return f"model {str(fingerprint)[:12]}" + (" (int8)" if int8 else "")


def load_query_model(target: Path, record: dict, fingerprint: str | None, query: Path, model: str | None,
                     int8: bool | None, **loading):  # -> protkit.embed.embedder.Embedder
    """The embedder for a FASTA ``query`` against ``target`` (index directory or codes file), with the
    recorded model's fingerprint; ``loading``: :func:`~protkit.embed.loading.load_embedder` options."""
    from protkit.embed.loading import load_embedder

    int8 = bool(record.get("int8")) if int8 is None else int8
    wanted = describe_model(fingerprint, int8)
    if model:
        embedder = load_embedder(model, int8=int8, **loading)
        if fingerprint and embedder.fingerprint != fingerprint:
            raise SearchError(f"--model {model} is {describe_model(embedder.fingerprint, int8)} but {target} was "
                              f"built with {wanted}; pass the model the index was built with")
        return embedder
    base = target if target.is_dir() else target.parent
    places = model_places(record, base)
    if not places:
        raise SearchError(f"{target} records no model; pass --model to embed {query}")
    tried = []
    for place in places:
        if (record.get("path") or record.get("relative_path")) and not Path(place).exists():
            tried.append(f"no model at {place}")
            continue
        try:
            embedder = load_embedder(place, int8=int8, **loading)
        except (FileNotFoundError, ValueError) as err:
            tried.append(f"{place} does not load here ({' '.join(str(err).split())})")
            continue
        if not fingerprint or embedder.fingerprint == fingerprint:
            return embedder
        tried.append(f"{place} is {describe_model(embedder.fingerprint, int8)}")
    raise SearchError(f"{query} is not an embeddings file, so it is read as FASTA and embedded with the model "
                      f"{target} was built with ({wanted}), and none was found: {'; '.join(tried)}. Was the model "
                      "moved? Pass --model with that model")
