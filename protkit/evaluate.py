"""Evaluation of a distilled student on held-out sequences.

Per model (``fp32``, ``int8``, and the baselines ``untrained`` — same config and init seed as the
distillation's initial model — and ``composition`` — ridge regression from amino-acid composition
to the teacher's vectors, fitted on the train split) and per pooling:

- cosine between the model's teacher-space pooled vector and the teacher's: mean, median, p5,
  min, overall and by length bin;
- ``recall@k``: the share of each held-out sequence's k nearest teacher-space neighbours (cosine,
  among the held-out set) that are also among its k nearest in the model's space
  (:mod:`protkit.agreement`).

Each student is compared with each baseline per sequence (``vs_baselines``): the mean of the
paired cosine differences, its 95% bootstrap interval and the share of sequences the student wins.
A student *beats* a baseline when that interval lies above zero (a win that is not sampling luck),
and ``beats_baselines`` needs that against both.

Also the int8-vs-fp32 cosine; neighbour agreement of the fp32 student's LSH codes at 64-1024 bits
and of its vectors stored as fp32/fp16 (``lsh``, ``stored_recall``); the downstream probes
(:mod:`protkit.probes`); and throughput (residues/s) of the teacher and both students, measured on
the same sequences with the same token-budget batching. :func:`evaluate` works on in-memory
inputs; :func:`evaluate_variant` is the file-level stage; :mod:`protkit.report` writes
``metrics.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from protkit.agreement import lsh_agreement, neighbour_recall, stored_recall
from protkit.embedders import Forward, pooled_embeddings, student_forward, teacher_forward
from protkit.eval_results import BASELINES, LENGTH_BINS, MODELS, PRECISIONS, Evaluation
from protkit.lsh import BIT_CHOICES, CANDIDATE_FACTOR
from protkit.models.esmc import ESMC
from protkit.models.prothash import ProtHash, ProtHashConfig
from protkit.probes import ProbeSpec, probe_specs, run_probes
from protkit.tokenize import encode_one

log = logging.getLogger(__name__)

COMPOSITION_ALPHABET = "ACDEFGHIKLMNPQRSTVWY" + "XBZUO"
LSH_SEED = 0
RIDGE_BLOCK_ROWS = 65536  # train sequences per block of the composition fit

__all__ = ["Split", "Evaluation", "evaluate", "evaluate_variant", "untrained_student"]


@dataclass
class Split:
    """Sequences with their teacher vectors ``{pooling: (N, D) float32}`` (the train split's may be
    :class:`protkit.targets.CacheRows`, read a block at a time)."""

    ids: list[str]
    sequences: list[str]
    teacher: dict[str, np.ndarray]


# --- metrics ---------------------------------------------------------------------------------
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``a (N, D)`` and ``b (N, D)``.  # (N,)"""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def describe(values: np.ndarray) -> dict:
    """mean, median, p5, min and n of per-sequence values (None when empty)."""
    if len(values) == 0:
        return {"n": 0, "mean": None, "median": None, "p5": None, "min": None}
    return {
        "n": int(len(values)),
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "p5": float(np.percentile(values, 5)),
        "min": float(np.min(values)),
    }


def by_length(values: np.ndarray, lengths: np.ndarray) -> dict[str, dict]:
    """:func:`describe` per length bin (residues) of :data:`LENGTH_BINS`."""
    return {label: describe(values[(lengths >= lo) & (lengths < hi)]) for lo, hi, label in LENGTH_BINS}


def paired_difference(model: np.ndarray, baseline: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per-sequence ``model - baseline`` cosine differences: mean, 95% bootstrap interval of the
    mean (``n_boot`` resamples of the sequences), and the share of sequences where the model is ahead."""
    diff = np.asarray(model, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)  # (N,)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95": [float(low), float(high)], "win_fraction": float((diff > 0).mean())}


# --- composition baseline ----------------------------------------------------------------------
def composition_features(sequences: Sequence[str]) -> np.ndarray:
    """Frequencies of the 20 standard amino acids and X B Z U O, plus log length.  # (N, 26)"""
    lut = np.full(256, len(COMPOSITION_ALPHABET), dtype=np.int64)  # other characters: not counted
    for i, aa in enumerate(COMPOSITION_ALPHABET):
        lut[ord(aa)] = i
    features = np.zeros((len(sequences), len(COMPOSITION_ALPHABET) + 1))
    for row, seq in enumerate(sequences):
        codes = lut[np.frombuffer(seq.upper().encode("ascii", "replace"), dtype=np.uint8)]
        counts = np.bincount(codes, minlength=len(COMPOSITION_ALPHABET) + 1)[: len(COMPOSITION_ALPHABET)]
        features[row, :-1] = counts / max(len(seq), 1)
        features[row, -1] = math.log(max(len(seq), 1))
    return features


@dataclass
class Ridge:
    """Standardized-feature ridge regression with an unpenalized intercept."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (F, D)
    intercept: np.ndarray  # (D,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept  # (N, D)


def fit_ridge(features: np.ndarray, targets: np.ndarray, alpha: float = 1.0) -> Ridge:
    """Closed form ``(XᵀX + αI)⁻¹ XᵀY`` on standardized, centred features and centred targets."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    x = (features - mean) / scale  # (M, F)
    y_mean = targets.mean(axis=0, dtype=np.float64)
    coef = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (targets - y_mean))  # (F, D)
    return Ridge(mean, scale, coef, y_mean)


def fit_composition(
    sequences: Sequence[str], targets: dict[str, np.ndarray], alpha: float = 1.0, block_rows: int = RIDGE_BLOCK_ROWS
) -> dict[str, Ridge]:
    """:func:`fit_ridge` of :func:`composition_features` to each pooling's ``targets`` (arrays or
    :class:`~protkit.targets.CacheRows`). Up to ``block_rows`` sequences: exactly ``fit_ridge``; more:
    the same fit from float64 moments accumulated ``block_rows`` at a time (features: mean and
    variance merged per block; then ``XᵀX``, ``XᵀY``, ``ΣX``, ``ΣY``), so memory stays flat."""
    n = len(sequences)
    if n <= block_rows:
        features = composition_features(sequences)
        return {p: fit_ridge(features, np.asarray(t[0:n], dtype=np.float32), alpha) for p, t in targets.items()}
    blocks = [slice(a, min(a + block_rows, n)) for a in range(0, n, block_rows)]
    count, mean, m2 = 0, 0.0, 0.0
    for block in blocks:  # Chan et al.'s merge of per-block means and squared deviations
        f = composition_features(sequences[block])
        b_mean, b_m2 = f.mean(axis=0), ((f - f.mean(axis=0)) ** 2).sum(axis=0)
        delta, total = b_mean - mean, count + len(f)
        mean, m2, count = mean + delta * len(f) / total, m2 + b_m2 + delta**2 * count * len(f) / total, total
    scale = np.sqrt(m2 / count)
    scale[scale == 0] = 1.0
    gram, x_sum = 0.0, 0.0
    cross = dict.fromkeys(targets, 0.0)
    y_sum = dict.fromkeys(targets, 0.0)
    for block in blocks:
        x = (composition_features(sequences[block]) - mean) / scale  # (b, F)
        gram, x_sum = gram + x.T @ x, x_sum + x.sum(axis=0)
        for p, t in targets.items():
            y = np.asarray(t[block], dtype=np.float64)  # (b, D)
            cross[p], y_sum[p] = cross[p] + x.T @ y, y_sum[p] + y.sum(axis=0)
    fits = {}
    for p in targets:
        y_mean = y_sum[p] / n
        coef = np.linalg.solve(gram + alpha * np.eye(len(mean)), cross[p] - np.outer(x_sum, y_mean))  # (F, D)
        fits[p] = Ridge(mean, scale, coef, y_mean)
    return fits


# --- models ------------------------------------------------------------------------------------
def untrained_student(config: ProtHashConfig, seed: int) -> ProtHash:
    """The distillation's initial model: ``torch.manual_seed(seed)`` then ``ProtHash(config)``
    (the global RNG state is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProtHash(config).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    forward: Forward, token_lists: Sequence[Sequence[int]], dim: int, max_tokens: int, device: torch.device
) -> dict:
    """Residues/s of ``forward`` + mean pooling over ``token_lists`` (after one warm-up batch)."""
    warm = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))[:1]
    pooled_embeddings(forward, [token_lists[i] for i in warm], ["mean"], dim, max_tokens, device, desc="warm-up")
    _sync(device)
    start = time.perf_counter()
    pooled_embeddings(forward, token_lists, ["mean"], dim, max_tokens, device, desc="throughput")
    _sync(device)
    seconds = time.perf_counter() - start
    residues = sum(len(t) - 2 for t in token_lists)
    return {"sequences": len(token_lists), "residues": residues, "seconds": seconds,
            "residues_per_s": residues / seconds if seconds > 0 else None}


# --- the evaluation ----------------------------------------------------------------------------
def evaluate(
    test: Split,
    train: Split,
    fp32: ProtHash,
    int8: ProtHash,
    untrained: ProtHash,
    teacher: ESMC,
    *,
    poolings: Sequence[str] = ("cls", "mean"),
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

    vectors: dict[str, dict[str, np.ndarray]] = {}
    for name, model in (("fp32", fp32), ("int8", int8), ("untrained", untrained)):
        model.to(device).eval()
        vectors[name] = pooled_embeddings(student_forward(model), tokens, poolings, dim, max_tokens, device, desc=name)
    test_features = composition_features(test.sequences)
    ridges = fit_composition(train.sequences, {p: train.teacher[p] for p in poolings}, ridge_alpha)
    vectors["composition"] = {p: ridges[p].predict(test_features) for p in poolings}

    cosines = {m: {p: cosine_rows(vectors[m][p], test.teacher[p]) for p in poolings} for m in MODELS}
    models = {
        m: {
            p: {"cosine": describe(cosines[m][p]), "by_length": by_length(cosines[m][p], lengths),
                f"recall@{k}": neighbour_recall(test.teacher[p], vectors[m][p], k)}
            for p in poolings
        }
        for m in MODELS
    }
    vs_baselines = {
        precision: {p: {b: paired_difference(cosines[precision][p], cosines[b][p]) for b in BASELINES} for p in poolings}
        for precision in PRECISIONS
    }
    beats = {
        precision: {p: all(gain["ci95"][0] > 0 for gain in gains.values()) for p, gains in per_pooling.items()}
        for precision, per_pooling in vs_baselines.items()
    }
    lsh = {
        "k": k, "bits": list(lsh_bits), "seed": LSH_SEED, "candidate_factor": CANDIDATE_FACTOR,
        "centre": "held-out fp32 student vectors (the searched set)",
        "poolings": {p: lsh_agreement(test.teacher[p], vectors["fp32"][p], k, lsh_bits, LSH_SEED) for p in poolings},
    }
    stored = {p: stored_recall(test.teacher[p], {m: vectors[m][p] for m in PRECISIONS}, k) for p in poolings}
    forwards = {"teacher": teacher_forward(teacher.to(device).eval()), "fp32": student_forward(fp32),
                "int8": student_forward(int8)}
    probe_results = run_probes(probes, forwards, dim, max_length, max_tokens, device)
    subset = tokens[:throughput_sequences]
    throughput = {m: measure_throughput(forward, subset, dim, max_tokens, device) for m, forward in forwards.items()}
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
        "models": models,
        "int8_vs_fp32": {p: describe(cosine_rows(vectors["int8"][p], vectors["fp32"][p])) for p in poolings},
        "vs_baselines": vs_baselines,
        "beats_baselines": beats,
        "lsh": lsh,
        "stored_recall": stored,
        "probes": probe_results,
        "throughput": throughput,
    }
    return Evaluation(metrics, cosines, lengths)


# --- file-level stage --------------------------------------------------------------------------
def _splits(sequences_parquet: str | Path, cache_dir: str | Path, poolings: Sequence[str],
            max_sequences: int | None, seed: int) -> tuple[Split, Split, dict]:
    """Held-out (seeded sample of at most ``max_sequences``, its vectors in memory) and train splits
    with teacher vectors; the train split's are :class:`~protkit.targets.CacheRows`, read from the
    cache's shards a block at a time by the composition fit."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from protkit.cache import read_manifest
    from protkit.data import read_dataset
    from protkit.targets import CacheRows, cache_index

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
    poolings: Sequence[str] = ("cls", "mean"),
    max_tokens: int = 16384,
    device: str = "auto",
    untrained_seed: int = 0,
    *,
    variant: str | None = None,
    max_sequences: int | None = 5000,
    throughput_sequences: int = 64,
    ridge_alpha: float = 1.0,
    teacher_random: dict | None = None,
    teacher_dtype: str = "fp32",
    sample_seed: int = 0,
    probes: dict | None = None,
) -> Evaluation:
    """Evaluate ``model_dir`` (fp32) and ``int8_dir`` against the teacher cache and on the
    ``probes`` (the configuration's ``probes`` section); :func:`protkit.report.write_report`
    writes the result."""
    from protkit.cache import teacher_from_config
    from protkit.device import resolve_device
    from protkit.quantize import load_quantized, read_quantization_info

    model_dir, int8_dir = Path(model_dir), Path(int8_dir)
    specs = probe_specs(probes)
    test, train, manifest = _splits(sequences_parquet, cache_dir, poolings, max_sequences, sample_seed)
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
    fp32_bytes = (model_dir / "model.safetensors").stat().st_size
    int8_bytes = (int8_dir / read_quantization_info(int8_dir)["weights"]).stat().st_size
    result.metrics.update({
        "variant": variant or model_dir.name,
        "model_dir": str(model_dir),
        "teacher": manifest.get("teacher"),
        "teacher_weights_sha256": teacher_sha,
        "teacher_dtype": teacher_dtype,
        "cache_fingerprint": manifest.get("fingerprint"),
        "untrained_seed": untrained_seed,
        "sizes": {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes, "int8_ratio": int8_bytes / fp32_bytes},
    })
    return result
