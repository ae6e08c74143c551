"""Evaluation of a distilled student on held-out sequences.

Per model (``fp32``, ``int8``, and the baselines ``untrained`` — same config and init seed as the
distillation's initial model — and ``composition`` — ridge regression from amino-acid composition
to the teacher's vectors, fitted on the train split) and per pooling:

- cosine between the model's teacher-space pooled vector and the teacher's: mean, median, p5,
  min, overall and by length bin;
- ``recall@k``: the share of each held-out sequence's k nearest teacher-space neighbours (cosine,
  among the held-out set) that are also among its k nearest in the model's space
  (:mod:`protkit.evaluate.agreement`).

Each student is compared with each baseline per sequence (``vs_baselines``): the mean of the
paired cosine differences, its 95% bootstrap interval and the share of sequences the student wins.
A student *beats* a baseline when that interval lies above zero (a win that is not sampling luck),
and ``beats_baselines`` needs that against both.

Also the int8-vs-fp32 cosine; neighbour agreement of the fp32 student's LSH codes at 64-1024 bits
and of its vectors stored as fp32/fp16 (``lsh``, ``stored_recall``); the downstream probes
(:mod:`protkit.evaluate.probes`); and throughput (residues/s) of the teacher and both students, measured on
the same sequences with the same token-budget batching. :func:`evaluate` works on in-memory
inputs; :func:`evaluate_variant` is the file-level stage (``workflow/rules/evaluate.smk``);
:mod:`protkit.evaluate.report` writes ``metrics.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from protkit.embed.embedder import pooled_embeddings, student_forward, teacher_forward
from protkit.evaluate.agreement import lsh_agreement, neighbour_recall, stored_recall
from protkit.evaluate.baselines import composition_features, fit_composition, untrained_student
from protkit.evaluate.metrics import by_length, cosine_rows, describe, paired_difference
from protkit.evaluate.probes import ProbeSpec, probe_specs, run_probes
from protkit.evaluate.results import BASELINES, LENGTH_BINS, MODELS, PRECISIONS, Evaluation
from protkit.evaluate.throughput import measure_throughput
from protkit.models.esmc.model import ESMC
from protkit.models.names import WEIGHTS_FILE
from protkit.models.prothash.model import ProtHash
from protkit.search.hygiene import require_usable
from protkit.search.lsh import BIT_CHOICES, CANDIDATE_FACTOR
from protkit.sequences.pooling import TARGET_POOLINGS
from protkit.sequences.tokenize import encode_one

log = logging.getLogger(__name__)

LSH_SEED = 0

__all__ = ["Split", "Evaluation", "evaluate", "evaluate_variant", "untrained_student"]


@dataclass
class Split:
    """Sequences with their teacher vectors ``{pooling: (N, D) float32}`` (the train split's may be
    :class:`protkit.teacher.read.CacheRows`, read a block at a time)."""

    ids: list[str]
    sequences: list[str]
    teacher: dict[str, np.ndarray]


def evaluate(
    test: Split,
    train: Split,
    fp32: ProtHash,
    int8: ProtHash,
    untrained: ProtHash,
    teacher: ESMC,
    *,
    poolings: Sequence[str] = TARGET_POOLINGS,
    max_tokens: int = 16384,
    max_length: int | None = None,
    device: str | torch.device = "cpu",
    ridge_alpha: float = 1.0,
    throughput_sequences: int = 64,
    k: int = 10,
    probes: Sequence[ProbeSpec] = (),
    lsh_bits: Sequence[int] = BIT_CHOICES,
) -> Evaluation:
    """All metrics of one variant (see the module docstring). ``max_length``: tokens incl.
    CLS/EOS (default: the student's context length); use the teacher cache's. ``probes`` run on
    the teacher and both students with the same truncation."""
    device = torch.device(device)
    poolings = list(poolings)
    max_length = max_length or fp32.config.context_length
    dim = fp32.config.teacher_dim
    if teacher.config.d_model != dim:
        raise ValueError(f"the student maps to {dim}-d vectors, the teacher gives {teacher.config.d_model}-d")
    tokens = [encode_one(s, max_length) for s in test.sequences]
    lengths = np.array([len(s) for s in test.sequences])

    vectors = {name: _pooled(model, tokens, poolings, dim, max_tokens, device, name)
               for name, model in (("fp32", fp32), ("int8", int8), ("untrained", untrained))}
    for p in poolings:
        require_usable(test.teacher[p], test.ids, f"the teacher cache's held-out {p} vectors")
        for name in vectors:
            require_usable(vectors[name][p], test.ids, f"the {name} student's held-out {p} vectors")
    ridges = fit_composition(train.sequences, {p: train.teacher[p] for p in poolings}, ridge_alpha)
    test_features = composition_features(test.sequences)
    vectors["composition"] = {p: ridges[p].predict(test_features) for p in poolings}
    cosines = {m: {p: cosine_rows(vectors[m][p], test.teacher[p]) for p in poolings} for m in MODELS}

    forwards = {"teacher": teacher_forward(teacher.to(device).eval()), "fp32": student_forward(fp32),
                "int8": student_forward(int8)}
    subset = tokens[:throughput_sequences]
    metrics = {
        "n_test": len(test.ids),
        "n_train": len(train.ids),
        "poolings": poolings,
        "max_length": max_length,
        "max_tokens": max_tokens,
        "device": str(device),
        "ridge_alpha": ridge_alpha,
        "k": k,
        "length_bins": [label for _, _, label in LENGTH_BINS],
        "models": _model_metrics(test, vectors, cosines, lengths, poolings, k),
        "int8_vs_fp32": {p: describe(cosine_rows(vectors["int8"][p], vectors["fp32"][p])) for p in poolings},
        **_baseline_gains(cosines, poolings),
        **_neighbour_agreement(test, vectors, poolings, k, lsh_bits),
        "probes": run_probes(probes, forwards, dim, max_length, max_tokens, device),
        "throughput": {m: measure_throughput(f, subset, dim, max_tokens, device) for m, f in forwards.items()},
    }
    return Evaluation(metrics, cosines, lengths)


def _pooled(model: ProtHash, tokens: list[list[int]], poolings: list[str], dim: int, max_tokens: int,
            device: torch.device, name: str) -> dict[str, np.ndarray]:
    """A student's teacher-space pooled vectors of the held-out sequences.  # {pooling: (N, D)}"""
    model.to(device).eval()
    return pooled_embeddings(student_forward(model), tokens, poolings, dim, max_tokens, device, desc=name)


def _model_metrics(test: Split, vectors: dict, cosines: dict, lengths: np.ndarray, poolings: list[str],
                   k: int) -> dict:
    """Per model and pooling: cosine to the teacher (overall and by length) and neighbour recall@k."""
    return {
        m: {
            p: {"cosine": describe(cosines[m][p]), "by_length": by_length(cosines[m][p], lengths),
                f"recall@{k}": neighbour_recall(test.teacher[p], vectors[m][p], k)}
            for p in poolings
        }
        for m in MODELS
    }


def _baseline_gains(cosines: dict, poolings: list[str]) -> dict:
    """``vs_baselines`` (paired per-sequence gains of each student over each baseline) and
    ``beats_baselines`` (the gain's 95% interval above zero against both)."""
    vs_baselines = {
        precision: {p: {b: paired_difference(cosines[precision][p], cosines[b][p]) for b in BASELINES} for p in poolings}
        for precision in PRECISIONS
    }
    beats = {
        precision: {p: all(gain["ci95"][0] > 0 for gain in gains.values()) for p, gains in per_pooling.items()}
        for precision, per_pooling in vs_baselines.items()
    }
    return {"vs_baselines": vs_baselines, "beats_baselines": beats}


def _neighbour_agreement(test: Split, vectors: dict, poolings: list[str], k: int, lsh_bits: Sequence[int]) -> dict:
    """``lsh``: the fp32 student's LSH codes against the teacher's neighbours; ``stored_recall``:
    both students' float vectors stored as fp32 and fp16."""
    lsh = {
        "k": k, "bits": list(lsh_bits), "seed": LSH_SEED, "candidate_factor": CANDIDATE_FACTOR,
        "centre": "held-out fp32 student vectors (the searched set)",
        "poolings": {p: lsh_agreement(test.teacher[p], vectors["fp32"][p], k, lsh_bits, LSH_SEED) for p in poolings},
    }
    stored = {p: stored_recall(test.teacher[p], {m: vectors[m][p] for m in PRECISIONS}, k) for p in poolings}
    return {"lsh": lsh, "stored_recall": stored}


def evaluation_splits(sequences_parquet: str | Path, cache_dir: str | Path, poolings: Sequence[str],
            max_sequences: int | None, seed: int) -> tuple[Split, Split, dict]:
    """Held-out (seeded sample of at most ``max_sequences``, its vectors in memory) and train splits
    with teacher vectors; the train split's are :class:`~protkit.teacher.read.CacheRows`, read from the
    cache's shards a block at a time by the composition fit."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from protkit.data.table import read_dataset
    from protkit.teacher.layout import read_manifest
    from protkit.teacher.read import CacheRows, cache_index

    table = read_dataset(sequences_parquet)
    manifest = read_manifest(cache_dir)
    missing_poolings = [p for p in poolings if p not in manifest["poolings"]]
    if missing_poolings:
        raise ValueError(f"evaluate.poolings: {', '.join(missing_poolings)} not in the teacher cache {cache_dir} "
                         f"(has {', '.join(manifest['poolings'])})")
    cache_ids, starts = cache_index(cache_dir, manifest)
    positions = pc.index_in(pa.array(table["id"], pa.string()), value_set=cache_ids)  # cache row per table row
    if positions.null_count:
        absent = np.flatnonzero(positions.is_null().to_numpy(zero_copy_only=False))
        raise ValueError(f"teacher cache {cache_dir} lacks {len(absent)} sequence(s) of {sequences_parquet}, "
                         f"e.g. {table['id'].iloc[int(absent[0])]}; rerun teacher_cache")
    row_of = positions.to_numpy().astype(np.int64)
    dim = int(manifest["d_model"])
    out = []
    for split, limit in (("test", max_sequences), ("train", None)):
        mask = (table["split"] == split).to_numpy()
        part, rows = table[mask], row_of[mask]
        if limit is not None and len(part) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(part), size=limit, replace=False))
            part, rows = part.iloc[keep], rows[keep]
        teacher = {p: CacheRows(cache_dir, manifest["shards"], starts, p, dim, rows) for p in poolings}
        if split == "test":
            teacher = {p: reader[:] for p, reader in teacher.items()}  # (n, D) float32, at most max_sequences
        out.append(Split(list(part["id"]), list(part["sequence"]), teacher))
    if not out[0].ids or not out[1].ids:
        raise ValueError(f"{sequences_parquet}: need sequences in both splits (test {len(out[0].ids)}, "
                         f"train {len(out[1].ids)}); check data.test_fraction")
    return out[0], out[1], manifest


def evaluate_variant(
    sequences_parquet: str | Path,
    cache_dir: str | Path,
    model_dir: str | Path,
    int8_dir: str | Path,
    teacher_weights: str,
    poolings: Sequence[str] = TARGET_POOLINGS,
    max_tokens: int = 16384,
    device: str = "auto",
    untrained_seed: int = 0,
    *,
    variant: str | None = None,
    max_sequences: int | None = 5000,
    throughput_sequences: int = 64,
    ridge_alpha: float = 1.0,
    teacher_random: dict | None = None,
    teacher_dtype: str = "auto",
    sample_seed: int = 0,
    probes: dict | None = None,
) -> Evaluation:
    """Evaluate ``model_dir`` (fp32) and ``int8_dir`` against the teacher cache and on the
    ``probes`` (the configuration's ``probes`` section); :func:`protkit.evaluate.report.write_report`
    writes the result."""
    from protkit.models.device import precision_of, resolve_device
    from protkit.models.prothash.int8 import load_quantized, read_quantization_info
    from protkit.teacher.loading import teacher_from_config

    model_dir, int8_dir = Path(model_dir), Path(int8_dir)
    specs = probe_specs(probes)
    test, train, manifest = evaluation_splits(sequences_parquet, cache_dir, poolings, max_sequences, sample_seed)
    fp32 = ProtHash.from_pretrained(model_dir)
    int8 = load_quantized(int8_dir)
    torch_device = resolve_device(device)
    teacher, teacher_sha = teacher_from_config(teacher_weights, teacher_random, torch_device, teacher_dtype)
    max_length = min(manifest["max_length"], fp32.config.context_length)
    log.info("evaluating %s on %d held-out sequences (train %d) on %s",
             model_dir, len(test.ids), len(train.ids), torch_device)
    result = evaluate(
        test, train, fp32, int8, untrained_student(fp32.config, untrained_seed), teacher,
        poolings=poolings, max_tokens=max_tokens, max_length=max_length, device=torch_device,
        ridge_alpha=ridge_alpha, throughput_sequences=throughput_sequences, probes=specs,
    )
    fp32_bytes = (model_dir / WEIGHTS_FILE).stat().st_size
    int8_bytes = (int8_dir / read_quantization_info(int8_dir)["weights"]).stat().st_size
    result.metrics.update({
        "variant": variant or model_dir.name,
        "model_dir": str(model_dir),
        "teacher": manifest.get("teacher"),
        "teacher_weights_sha256": teacher_sha,
        "teacher_dtype": precision_of(next(teacher.parameters()).dtype),  # auto resolved
        "cache_fingerprint": manifest.get("fingerprint"),
        "untrained_seed": untrained_seed,
        "sizes": {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes, "int8_ratio": int8_bytes / fp32_bytes},
    })
    return result
