"""Synthetic teacher caches for memory and speed measurements of the distillation (and tests).

:func:`write_cache` writes given vectors in the teacher cache's format (docs/design.md, "Teacher
cache": ``fingerprint.json``, ``pooled-NNNNN.parquet`` shards with ``protkit`` metadata, optional
``tokens-NNNNN.safetensors``, ``manifest.json`` last) beside nothing else; :func:`synthetic_cache`
makes ``n`` random proteins and random fp16 vectors shard by shard (memory: one shard) and writes
``sequences.parquet`` (the data stage's schema) and the cache. Peak RSS of a short distillation::

    python -m benchmarks.synthetic_cache --sequences 200000 --residues 8 16 --test-fraction 0.02 --out /tmp/s200k
    python -m benchmarks.synthetic_cache --sequences 800000 --residues 8 16 --test-fraction 0.02 --out /tmp/s800k
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

AMINO_ACIDS = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
STORE = {"fp16": (pa.float16(), np.float16), "fp32": (pa.float32(), np.float32)}


def write_cache(
    out_dir: str | Path,
    shards: Iterator[tuple[list[str], list[str], list[str], dict[str, np.ndarray]]],
    *,
    dim: int,
    max_length: int,
    poolings: Sequence[str] = ("cls", "mean"),
    store_dtype: str = "fp16",
    token_vectors: dict[str, np.ndarray] | None = None,
    teacher: str = "synthetic",
    dataset: str = "synthetic",
) -> dict:
    """Write a complete teacher cache from ``shards``: ``(ids, sequences, splits, {pooling: (n, D)})``
    one shard at a time (every shard but the last equally long); ``token_vectors`` (id -> ``(L_i, D)``)
    adds per-residue shards. Returns the manifest."""
    from protkit.io.metadata import metadata_entry
    from protkit.teacher.layout import cache_fingerprint, pooled_name, tokens_name

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint, parts = cache_fingerprint(f"synthetic-{teacher}", max_length, poolings, store_dtype,
                                           token_vectors is not None)
    (out_dir / "fingerprint.json").write_text(json.dumps({"fingerprint": fingerprint, "fingerprint_parts": parts}))
    arrow_type, numpy_type = STORE[store_dtype]
    names, token_names, n, shard_size = [], [], 0, 0
    for k, (ids, seqs, splits, vectors) in enumerate(shards):
        rows = hashlib.sha256("".join(f"{i}\t{s}\t{p}\n" for i, s, p in zip(ids, seqs, splits)).encode()).hexdigest()
        meta = metadata_entry({"fingerprint": fingerprint, "rows_sha256": rows})
        columns = {"id": pa.array(ids, pa.string()), "split": pa.array(splits, pa.string())}
        for p in poolings:  # (n, D)
            flat = pa.array(np.ascontiguousarray(vectors[p], dtype=numpy_type).ravel(), type=arrow_type)
            columns[p] = pa.FixedSizeListArray.from_arrays(flat, dim)
        pq.write_table(pa.table(columns).replace_schema_metadata(meta), out_dir / pooled_name(k))
        names.append(pooled_name(k))
        if token_vectors is not None:
            from safetensors.numpy import save_file

            save_file({i: np.asarray(token_vectors[i], np.float16) for i in ids}, str(out_dir / tokens_name(k)),
                      metadata=meta)
            token_names.append(tokens_name(k))
        n, shard_size = n + len(ids), max(shard_size, len(ids))
    manifest = {
        "fingerprint": fingerprint, "fingerprint_parts": parts, "teacher": teacher, "dataset": dataset,
        "d_model": dim, "poolings": sorted(poolings), "store_dtype": store_dtype,
        "tokens": token_vectors is not None, "max_length": max_length, "n_sequences": n,
        "shard_size": shard_size, "shards": names, "token_shards": token_names,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def write_sequences(path: str | Path, ids: Sequence[str], sequences: Sequence[str], splits: Sequence[str]) -> Path:
    """A ``sequences.parquet`` in the data stage's schema (no aliases)."""
    from protkit.data.table import SCHEMA

    table = pa.table({
        "id": pa.array(ids, pa.string()), "sequence": pa.array(sequences, pa.string()),
        "length": pa.array([len(s) for s in sequences], pa.int32()), "split": pa.array(splits, pa.string()),
        "aliases": pa.array([""] * len(ids), pa.string()),
    })  # fmt: skip
    pq.write_table(table.cast(SCHEMA), path)
    return Path(path)


def synthetic_cache(
    out_dir: str | Path, n_sequences: int, dim: int = 960, *, shard_size: int = 4096,
    residues: tuple[int, int] = (20, 60), test_fraction: float = 0.1, max_length: int = 64,
    store_dtype: str = "fp16", seed: int = 0,
) -> tuple[Path, Path]:
    """``out_dir/sequences.parquet`` and ``out_dir/cache`` for ``n_sequences`` random proteins of
    ``residues`` (min, max) length with random teacher vectors (cls, mean); returns both paths.
    Reuses what a previous call with the same arguments wrote."""
    out_dir = Path(out_dir)
    stamp = out_dir / "synthetic.json"
    arguments = {"n": n_sequences, "dim": dim, "shard_size": shard_size, "residues": list(residues),
                 "test_fraction": test_fraction, "max_length": max_length, "store_dtype": store_dtype, "seed": seed}
    parquet, cache = out_dir / "sequences.parquet", out_dir / "cache"
    if stamp.exists() and json.loads(stamp.read_text()) == arguments:
        return parquet, cache
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(residues[0], residues[1] + 1, size=n_sequences)
    ids = [f"S{i:08d}" for i in range(n_sequences)]
    split_of = np.where(rng.random(n_sequences) < test_fraction, "test", "train")
    seqs: list[str] = []
    for length in lengths:
        seqs.append(AMINO_ACIDS[rng.integers(0, len(AMINO_ACIDS), size=length)].tobytes().decode())
    write_sequences(parquet, ids, seqs, split_of.tolist())

    def shards():
        for start in range(0, n_sequences, shard_size):
            stop = min(start + shard_size, n_sequences)
            vectors = {p: rng.standard_normal((stop - start, dim), dtype=np.float32) for p in ("cls", "mean")}
            yield ids[start:stop], seqs[start:stop], split_of[start:stop].tolist(), vectors

    write_cache(cache, shards(), dim=dim, max_length=max_length, store_dtype=store_dtype)
    stamp.write_text(json.dumps(arguments))
    return parquet, cache


TINY_VARIANT = {
    "architecture": {"d_model": 32, "q_heads": 4, "kv_heads": 2, "n_layers": 1, "context_length": 64},
    "training": {"max_steps": 5, "warmup_steps": 1, "batch_tokens": 4096, "eval_every": 1000, "checkpoint_every": 5},
}


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _child(parquet: str, cache: str, work: str) -> None:
    """Run a short distillation; print its peak RSS (KiB) as JSON. ``VmHWM``, not ``ru_maxrss``:
    Linux carries the forking parent's peak into the child's ``ru_maxrss`` at exec."""
    import time

    from protkit.distill.run import distill_from_cache

    work_dir, imported, start = Path(work), _status_kib("VmRSS"), time.perf_counter()
    summary = distill_from_cache(parquet, cache, TINY_VARIANT, work_dir / "model", work_dir / "ckpt",
                                 work_dir / "tb", "cpu", variant_name="rss")
    print(json.dumps({"peak_rss_kib": _status_kib("VmHWM"), "after_imports_kib": imported,
                      "seconds": round(time.perf_counter() - start, 1), "n_train": summary["n_train"],
                      "n_test": summary["n_test"], "steps": summary["steps"]}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, required=True)
    parser.add_argument("--dim", type=int, default=960)
    parser.add_argument("--residues", type=int, nargs=2, default=(20, 60), metavar=("MIN", "MAX"))
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    parquet, cache = synthetic_cache(args.out, args.sequences, args.dim, residues=tuple(args.residues),
                                     test_fraction=args.test_fraction)
    code = "import sys; from benchmarks.synthetic_cache import _child; _child(*sys.argv[1:])"
    result = subprocess.run([sys.executable, "-c", code, str(parquet), str(cache), str(args.out / "run")],
                            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps({"sequences": args.sequences, "dim": args.dim, **report,
                      "peak_rss_mib": round(report["peak_rss_kib"] / 1024, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
