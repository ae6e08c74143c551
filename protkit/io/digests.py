"""Digests that identify files and settings: sha256 of a file's bytes, of a JSON value."""

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
