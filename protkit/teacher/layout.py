"""The files of a teacher cache and the rules they follow: names, the fingerprint, parts.

Layout of a cache directory (docs/design.md, "Teacher cache"):

- ``fingerprint.json``: written first; ``{"fingerprint": hex, "fingerprint_parts": {...}}``.
- ``pooled-NNNNN.parquet``: shard ``k`` holds rows ``[k * shard_size, (k + 1) * shard_size)`` of the
  sequences table in its given order; columns ``id``, ``split`` and one fixed-size list of ``D``
  float16/float32 per pooling (``cls``, ``mean``). protkit metadata (:mod:`protkit.io.metadata`):
  ``{"fingerprint": hex, "rows_sha256": hex}`` (the latter over the shard's ids, sequences, splits).
- ``tokens-NNNNN.safetensors`` (``tokens=True``): one float16 tensor ``(L_i, D)`` per sequence, keyed
  by sequence id, residues only (no CLS/EOS), ``L_i = embedded_residues(len, max_length)``; the same
  ``protkit`` metadata entry (one key: safetensors stores metadata in hash order).
- ``manifest.json``: written last; its presence means the cache is complete.

A cache may also be built by several jobs, each embedding one part of the sequences (parts by
:func:`sequence_parts`), and joined into the same files as a single-job build.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from protkit.io.atomic import write_json
from protkit.io.digests import json_sha256
from protkit.sequences.tokenize import VOCAB
from protkit.version import VERSION

FINGERPRINT_FILE = "fingerprint.json"
MANIFEST_FILE = "manifest.json"


class CacheError(RuntimeError):
    """A teacher cache that cannot be built or read; the message names the directory."""


class FingerprintMismatch(CacheError):
    """The directory holds a cache built with other weights or settings."""


def pooled_name(shard: int) -> str:
    return f"pooled-{shard:05d}.parquet"


def tokens_name(shard: int) -> str:
    return f"tokens-{shard:05d}.safetensors"


def shard_lists(n_shards: int, tokens: bool) -> dict[str, list[str]]:
    """The manifest's ``shards`` and ``token_shards`` entries of a cache of ``n_shards`` shards."""
    return {"shards": [pooled_name(k) for k in range(n_shards)],
            "token_shards": [tokens_name(k) for k in range(n_shards)] if tokens else []}


def cache_fingerprint(
    weights_sha256: str, max_length: int, poolings: Iterable[str], store_dtype: str, tokens: bool
) -> tuple[str, dict]:
    """sha256 hex over everything that changes the cached numbers, and the parts themselves."""
    parts = {
        "weights_sha256": weights_sha256,
        "tokenizer_vocab": list(VOCAB),
        "max_length": int(max_length),
        "poolings": sorted(set(poolings)),
        "store_dtype": store_dtype,
        "tokens": bool(tokens),
        "protkit_version": VERSION,
    }
    return json_sha256(parts), parts


def sequence_parts(sequences: Iterable[str], nparts: int) -> np.ndarray:
    """The part (0 .. nparts - 1) of each sequence: the first 8 bytes of its sha256, modulo ``nparts``.

    A sequence keeps its part when other sequences are added or removed.
    """
    if nparts < 1:
        raise ValueError(f"the number of parts must be at least 1, got {nparts}")
    digests = (hashlib.sha256(s.encode("utf-8")).digest()[:8] for s in sequences)
    return np.fromiter((int.from_bytes(d, "big") % nparts for d in digests), dtype=np.int64)


def part_rows(seqs: list[str], part: tuple[int, int]) -> list[int]:
    """The rows (indices into ``seqs``) in part ``part = (p, n)``, in table order."""
    index, count = part
    if not 0 <= index < count:
        raise ValueError(f"part must be (p, n) with 0 <= p < n, got {tuple(part)}")
    return np.flatnonzero(sequence_parts(seqs, count) == index).tolist()


def part_dir(cache_dir: str | Path, part: tuple[int, int]) -> Path:
    """Where part ``part = (p, n)`` of the cache ``cache_dir`` is built (the workflow's layout)."""
    return Path(cache_dir) / f"part-{part[0]}-of-{part[1]}"


def check_fingerprint(
    out_dir: Path, path: Path, found: str | None, expected: str,
    found_parts: dict | None = None, parts: dict | None = None,
) -> None:
    """FingerprintMismatch naming both fingerprints (and what changed) unless ``found == expected``."""
    if found == expected:
        return
    changed = ""
    if found_parts and parts:
        diffs = [f"{k}: {found_parts.get(k)!r} -> {parts[k]!r}" for k in parts
                 if k != "tokenizer_vocab" and found_parts.get(k) != parts[k]]
        changed = f" (changed: {'; '.join(diffs)})" if diffs else ""
    raise FingerprintMismatch(
        f"teacher cache {out_dir}: {path.name} has fingerprint {found} but this run has fingerprint "
        f"{expected}{changed}. Refusing to mix caches: delete {out_dir} or write to another directory."
    )


def check_directory(out_dir: Path, fingerprint: str, parts: dict) -> None:
    """Refuse a directory whose manifest.json or fingerprint.json records another fingerprint."""
    for name in (MANIFEST_FILE, FINGERPRINT_FILE):
        path = out_dir / name
        if path.exists():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            check_fingerprint(out_dir, path, recorded.get("fingerprint"), fingerprint,
                              recorded.get("fingerprint_parts"), parts)


def start_build(out_dir: Path, fingerprint: str, parts: dict) -> None:
    """Mark the directory incomplete (no manifest) and record the fingerprint of this build."""
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # incomplete until this build finishes
    for leftover in out_dir.glob(".*.tmp"):  # from a job killed mid-write (SIGKILL skips cleanup)
        leftover.unlink()
    write_json(out_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint, "fingerprint_parts": parts})


def read_manifest(cache_dir: str | Path) -> dict:
    """The manifest of a complete cache; CacheError if the build has not finished."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST_FILE
    if not path.exists():
        state = "an interrupted or unfinished build" if (cache_dir / FINGERPRINT_FILE).exists() else "no cache built"
        raise CacheError(f"cache incomplete: {path} does not exist ({state}); rerun teacher_cache")
    return json.loads(path.read_text(encoding="utf-8"))
