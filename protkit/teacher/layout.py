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
- Stage targets (:class:`StageOptions`, ProtHash 1.0; only when asked for, so other caches keep their
  files and fingerprint): a ``layer{l}_mean`` column per chosen teacher block ``l`` (mean over the
  residues of the hidden state before the final norm) in the pooled shards; with ``stage_tokens``,
  ``stages-NNNNN.safetensors``: one float16 ``(L_i, D)`` tensor per sequence and layer, keyed
  ``layer{l}/{id}``; with ``logits``, ``logits-NNNNN.safetensors``: one float16 ``(L_i, 33)`` tensor of
  MLM logits per sequence, keyed by id. Residues only, as in the tokens files.
- ``manifest.json``: written last; its presence means the cache is complete.

A cache may also be built by several jobs, each embedding one part of the sequences (parts by
:func:`sequence_parts`), and joined into the same files as a single-job build.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from protkit.io.atomic import write_json
from protkit.io.digests import json_sha256
from protkit.sequences.tokenize import VOCAB
from protkit.version import VERSION

FINGERPRINT_FILE = "fingerprint.json"
MANIFEST_FILE = "manifest.json"
TOKENS_KIND, STAGES_KIND, LOGITS_KIND = "tokens", "stages", "logits"
TENSOR_KINDS = (TOKENS_KIND, STAGES_KIND, LOGITS_KIND)  # last layer, stage layers, MLM logits
MANIFEST_LISTS = {TOKENS_KIND: "token_shards", STAGES_KIND: "stage_shards", LOGITS_KIND: "logit_shards"}
STAGE_POOLING = "mean"  # the pooled vector a cache keeps of each stage layer (over residues)


class CacheError(RuntimeError):
    """A teacher cache that cannot be built or read; the message names the directory."""


class FingerprintMismatch(CacheError):
    """The directory holds a cache built with other weights or settings."""


def pooled_name(shard: int) -> str:
    return f"pooled-{shard:05d}.parquet"


def tensor_name(kind: str, shard: int) -> str:
    """A per-residue shard file: ``kind`` is one of :data:`TENSOR_KINDS`."""
    return f"{kind}-{shard:05d}.safetensors"


def tokens_name(shard: int) -> str:
    return tensor_name(TOKENS_KIND, shard)


def layer_column(layer: int) -> str:
    """The pooled column of teacher block ``layer``'s mean over residues: ``layer7_mean``."""
    return f"layer{layer}_{STAGE_POOLING}"


def stage_key(layer: int, rid: str) -> str:
    """The key of sequence ``rid``'s vectors of teacher block ``layer`` in a stages file."""
    return f"layer{layer}/{rid}"


@dataclass(frozen=True)
class StageOptions:
    """Targets a cache stores beside the last layer's (ProtHash 1.0's stages); all off by default."""

    layers: tuple[int, ...] = ()  # 0-based teacher blocks, ascending, no repeats
    tokens: bool = False  # per-residue vectors of each layer (stages files)
    logits: bool = False  # per-residue MLM logits (logits files)

    @classmethod
    def of(cls, recorded: dict) -> "StageOptions":
        """The options a manifest (or fingerprint parts) records; all off when it records none."""
        return cls(tuple(recorded.get("stage_layers", ())), bool(recorded.get("stage_tokens")),
                   bool(recorded.get("logits")))

    @property
    def enabled(self) -> bool:
        return bool(self.layers) or self.logits

    def entries(self) -> dict:
        """The fingerprint and manifest entries; none when off (caches without stages are unchanged)."""
        if not self.enabled:
            return {}
        return {"stage_layers": list(self.layers), "stage_tokens": self.tokens, "logits": self.logits}

    @property
    def columns(self) -> list[str]:
        return [layer_column(layer) for layer in self.layers]


def pooled_columns(manifest: dict) -> list[str]:
    """The vector columns of a cache's pooled shards: its poolings, then its stage layers' means."""
    return [*manifest["poolings"], *StageOptions.of(manifest).columns]


def tensor_kinds(tokens: bool, stages: StageOptions = StageOptions()) -> tuple[str, ...]:
    """The per-residue shard files of a cache, by kind."""
    wanted = {TOKENS_KIND: tokens, STAGES_KIND: stages.tokens, LOGITS_KIND: stages.logits}
    return tuple(kind for kind in TENSOR_KINDS if wanted[kind])


def tensor_keys(kind: str, rid: str, layers: Sequence[int] = ()) -> list[str]:
    """The keys of sequence ``rid``'s tensors in a per-residue shard of ``kind``."""
    return [stage_key(layer, rid) for layer in layers] if kind == STAGES_KIND else [rid]


def shard_lists(n_shards: int, tokens: bool, stages: StageOptions = StageOptions()) -> dict[str, list[str]]:
    """The manifest's ``shards`` and ``token_shards`` entries of a cache of ``n_shards`` shards (and
    ``stage_shards``, ``logit_shards`` when it stores them)."""
    lists = {"shards": [pooled_name(k) for k in range(n_shards)],
             "token_shards": [tokens_name(k) for k in range(n_shards)] if tokens else []}
    for kind in tensor_kinds(False, stages):
        lists[MANIFEST_LISTS[kind]] = [tensor_name(kind, k) for k in range(n_shards)]
    return lists


def cache_fingerprint(
    weights_sha256: str, max_length: int, poolings: Iterable[str], store_dtype: str, tokens: bool,
    stages: StageOptions = StageOptions(), precision: str = "fp32",
) -> tuple[str, dict]:
    """sha256 hex over everything that changes the cached numbers, and the parts themselves
    (``precision``: the teacher's forward pass, so bf16 and fp32 vectors never share a cache)."""
    parts = {
        "weights_sha256": weights_sha256,
        "tokenizer_vocab": list(VOCAB),
        "max_length": int(max_length),
        "poolings": sorted(set(poolings)),
        "store_dtype": store_dtype,
        "tokens": bool(tokens),
        "precision": precision,
        "protkit_version": VERSION,
        **stages.entries(),
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
        diffs = [f"{k}: {found_parts.get(k)!r} -> {parts.get(k)!r}" for k in {**found_parts, **parts}
                 if k != "tokenizer_vocab" and found_parts.get(k) != parts.get(k)]
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
