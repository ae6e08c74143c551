"""Digests that identify files and settings: sha256 of a file's bytes, of a JSON value; settings
flattened to dotted keys, to name what differs between two of them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK_BYTES = 8 << 20  # a file is hashed this many bytes at a time


def file_sha256(path: str | Path, chunk: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_sha256(value: Any) -> str:
    """Hex sha256 of ``value`` as compact JSON with sorted keys (equal values, equal digests)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def flatten(settings: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"a.b": value}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
