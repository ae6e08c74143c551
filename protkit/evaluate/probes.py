"""Downstream probes: can a labelled property of proteins be read off frozen embeddings?

A probe is a labelled set: a FASTA file whose header line (the text after ``>``) holds the label,
picked out by ``label_regex`` (one capture group; records it does not match are skipped and
counted), or a TSV/parquet table with ``id``, ``sequence``, ``label`` and optionally ``split``
columns. Proteins go to train or test by a stable hash of their id (``test_fraction``,
``split_salt``), by ``split_regex`` (FASTA) or by the ``split`` column; ``max_sequences`` keeps the
proteins whose seeded id hash is lowest, so probes over one file share most of their proteins.

Per model (the teacher, the fp32 and the int8 student, and a ``random`` control: seeded Gaussian
vectors of the same width, one per protein) a logistic regression on standardised features
(balanced class weights) is fitted on train and scored on test: MCC, macro F1, accuracy; beside
it 1-nearest-neighbour label transfer (cosine, train -> test). A student's ``normalised_mcc`` is
``(student - random) / (teacher - random)``: 1 = as informative as the teacher, 0 = as noise.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from protkit.data.filter import split_of
from protkit.io.paths import DataPathError, resolve_data_path
from protkit.search.hygiene import require_usable
from protkit.search.knn import exact_topk
from protkit.search.vectors import normalise
from protkit.sequences.alphabet import check_alphabet, clean_sequence
from protkit.sequences.fasta import header_regex, read_fasta
from protkit.sequences.tokenize import encode_one, max_residues

if TYPE_CHECKING:  # torch only where models run: the workflow checks probe specs at parse time
    import torch

    from protkit.embed.embedder import Forward

RANDOM = "random"
MAX_ITER = 5000  # logistic regression iterations (lbfgs); non-convergence is reported, not fatal
SPEC_DEFAULTS = {"label_regex": None, "split_regex": None, "test_fraction": 0.3, "split_salt": "protkit-probe-v1",
                 "pooling": "mean", "max_sequences": None, "seed": 0, "optional": False}
SPLITS = ("train", "test")


class ProbeError(ValueError):
    """A user-facing problem with a probe's configuration or file; names the key, file and line."""


@dataclass(frozen=True)
class ProbeSpec:
    """One ``probes.<name>`` entry of the workflow configuration."""

    name: str
    path: Path
    label_pattern: re.Pattern | None
    split_pattern: re.Pattern | None
    test_fraction: float
    split_salt: str
    pooling: str
    max_sequences: int | None
    seed: int
    optional: bool

    @property
    def is_table(self) -> bool:
        return is_table(self.path)

    @classmethod
    def from_config(cls, name: str, entry: Mapping) -> ProbeSpec:
        """Check one ``probes.<name>`` mapping; ProbeError naming the key when it cannot work."""
        settings = {**SPEC_DEFAULTS, **entry}
        try:
            path = resolve_data_path(str(settings["path"]))
        except DataPathError as err:
            raise ProbeError(f"probes.{name}.path: {err}") from None
        label = _compile(name, "label_regex", settings["label_regex"])
        split = _compile(name, "split_regex", settings["split_regex"])
        if is_table(path) and (label or split):
            raise ProbeError(f"probes.{name}: label_regex/split_regex are for FASTA files; the table {path} "
                             "gives 'label' (and 'split') columns")
        if not is_table(path) and label is None:
            raise ProbeError(f"probes.{name}.label_regex: required for the FASTA file {path} (one capture group "
                             r"taking the label from the header line, e.g. '^\S+ (\S+)-[MSU] ')")
        return cls(name, path, label, split, float(settings["test_fraction"]), str(settings["split_salt"]),
                   str(settings["pooling"]), settings["max_sequences"], int(settings["seed"]),
                   bool(settings["optional"]))


def probe_specs(probes: Mapping[str, Mapping] | None) -> list[ProbeSpec]:
    """The ``probes`` section of the configuration as checked specs, in order."""
    return [ProbeSpec.from_config(name, entry) for name, entry in (probes or {}).items()]


def is_table(path: Path) -> bool:
    """``.tsv`` (``.gz`` ok) and ``.parquet`` files are tables; anything else is read as FASTA."""
    name = path.name.lower()
    return name.endswith((".tsv", ".tsv.gz", ".parquet"))


def _compile(name: str, key: str, pattern: str | None) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        return header_regex(pattern)
    except ValueError as err:
        raise ProbeError(f"probes.{name}.{key}: {err}") from None


# --- reading a labelled set ----------------------------------------------------------------------
@dataclass
class ProbeSet:
    """The proteins of one probe after parsing, filtering, sampling and splitting."""

    name: str
    ids: list[str]
    sequences: list[str]
    labels: np.ndarray  # (N,) str
    test: np.ndarray  # (N,) bool
    n_records: int  # records in the file
    skipped: dict[str, int]  # reason -> records left out


@dataclass
class _Labelled:
    id: str
    sequence: str
    label: str
    split: str | None  # from split_regex or a split column; None = hash split


def read_probe(spec: ProbeSpec) -> ProbeSet:
    """Parse ``spec.path``, drop what has no label or letters outside the amino-acid alphabet,
    keep ``max_sequences`` and split; ProbeError (naming file, line and key) when unusable."""
    records, skipped = _read_table(spec) if spec.is_table else _read_fasta(spec)
    n_records = len(records) + sum(skipped.values())
    kept = []
    for record in records:
        record.sequence = clean_sequence(record.sequence)
        if not record.sequence or check_alphabet(record.sequence):
            skipped["alphabet"] += 1
        else:
            kept.append(record)
    if spec.max_sequences is not None and len(kept) > spec.max_sequences:
        skipped["over_max_sequences"] += len(kept) - spec.max_sequences
        kept = _lowest_hashes(kept, spec.max_sequences, spec.seed)
    test = np.array([(r.split or split_of(r.id, spec.split_salt, spec.test_fraction)) == "test" for r in kept], bool)
    labels = np.array([r.label for r in kept], dtype=object)
    _check_usable(spec, labels, test)
    return ProbeSet(spec.name, [r.id for r in kept], [r.sequence for r in kept], labels, test, n_records,
                    dict(skipped))


def _lowest_hashes(records: list[_Labelled], n: int, seed: int) -> list[_Labelled]:
    """The ``n`` records whose seeded sha256 of the id is lowest, in file order."""
    rank = sorted(range(len(records)),
                  key=lambda i: hashlib.sha256(f"{seed}:{records[i].id}".encode("utf-8")).digest())
    return [records[i] for i in sorted(rank[:n])]


def _check_usable(spec: ProbeSpec, labels: np.ndarray, test: np.ndarray) -> None:
    key = f"probes.{spec.name}"
    if len(labels) == 0:
        raise ProbeError(f"{spec.path}: no usable labelled protein ({key})")
    if test.all() or not test.any():
        raise ProbeError(f"{spec.path}: all {len(labels)} proteins fall in the {'test' if test.all() else 'train'} "
                         f"split; change {key}.test_fraction (or the split labels)")
    if len(set(labels[~test])) < 2:
        raise ProbeError(f"{spec.path}: the train split has only the label {labels[~test][0]!r}; a probe needs "
                         f"two classes or more ({key})")


def _read_fasta(spec: ProbeSpec) -> tuple[list[_Labelled], Counter]:
    records, skipped, first = [], Counter(), None
    key = f"probes.{spec.name}"
    for record in read_fasta(spec.path):
        where = f"{spec.path} line {record.line}, id {record.id}"
        first = first or f"line {record.line}: {record.description!r}"
        found = spec.label_pattern.search(record.description)
        if found is None or found.group(1) is None:
            skipped["no_label"] += 1
            continue
        label = found.group(1).strip()
        if not label:
            raise ProbeError(f"{where}: {key}.label_regex captured an empty label")
        split = None
        if spec.split_pattern is not None:
            found = spec.split_pattern.search(record.description)
            split = _split_value(found.group(1) if found else None, where, f"{key}.split_regex")
        records.append(_Labelled(record.id, record.sequence, label, split))
    if not records:
        raise ProbeError(f"{spec.path}: {key}.label_regex {spec.label_pattern.pattern!r} matches no header "
                         f"(first header, {first})")
    return records, skipped


def _read_table(spec: ProbeSpec) -> tuple[list[_Labelled], Counter]:
    import pandas as pd

    parquet = spec.path.name.lower().endswith(".parquet")
    table = (pd.read_parquet(spec.path) if parquet
             else pd.read_csv(spec.path, sep="\t", dtype=str, keep_default_na=False))
    missing = [c for c in ("id", "sequence", "label") if c not in table.columns]
    if missing:
        raise ProbeError(f"{spec.path}: no column {', '.join(missing)} (has {', '.join(map(str, table.columns))}); "
                         f"a probe table needs id, sequence, label (and optionally split) (probes.{spec.name})")
    records, skipped = [], Counter()
    for row, item in enumerate(table.itertuples(index=False)):
        where = f"{spec.path} {'row' if parquet else 'line'} {row + 1 if parquet else row + 2}, id {item.id}"
        label = "" if item.label is None else str(item.label).strip()
        if not label:
            skipped["no_label"] += 1
            continue
        split = _split_value(str(item.split), where, "column split") if "split" in table.columns else None
        records.append(_Labelled(str(item.id), str(item.sequence or ""), label, split))
    return records, skipped


def _split_value(value: str | None, where: str, key: str) -> str:
    split = (value or "").strip().lower()
    if split not in SPLITS:
        raise ProbeError(f"{where}: {key} gave {value!r}; expected 'train' or 'test'")
    return split


# --- scoring ---------------------------------------------------------------------------------------
def random_control(n: int, dim: int, seed: int) -> np.ndarray:
    """One seeded Gaussian vector per protein: what a probe reads from noise.  # (N, D)"""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def normalised_score(model: float, teacher: float, random: float) -> float | None:
    """``(model - random) / (teacher - random)``: the share of the teacher's gain over the random
    control that the model keeps; None when the teacher is no better than random."""
    gain = teacher - random
    return (model - random) / gain if gain > 0 else None


def score_vectors(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> dict:
    """Logistic regression (standardised, balanced) train -> test: MCC, macro F1, accuracy; and
    1-nearest-neighbour (cosine) label transfer accuracy. ``*_x`` (N, D), ``*_y`` (N,)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER, class_weight="balanced"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(train_x, train_y)
    predicted = classifier.predict(test_x)  # (T,)
    nearest = exact_topk(normalise(train_x), normalise(test_x), 1)[1][:, 0]  # (T,)
    return {
        "mcc": float(matthews_corrcoef(test_y, predicted)),
        "macro_f1": float(f1_score(test_y, predicted, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(test_y, predicted)),
        "knn1_accuracy": float(np.mean(train_y[nearest] == test_y)),
        "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
    }


def score_probe(probe: ProbeSet, vectors: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, dict]:
    """Scores per model of ``vectors`` ({model: (N, D)}, one of them ``teacher``) and of the random
    control; students get ``normalised_mcc``."""
    dim = next(iter(vectors.values())).shape[1]
    every = {**vectors, RANDOM: random_control(len(probe.ids), dim, seed)}
    train, test = ~probe.test, probe.test
    scores = {m: score_vectors(x[train], probe.labels[train], x[test], probe.labels[test]) for m, x in every.items()}
    for model, score in scores.items():
        if model not in ("teacher", RANDOM):
            score["normalised_mcc"] = normalised_score(score["mcc"], scores["teacher"]["mcc"], scores[RANDOM]["mcc"])
    return scores


# --- running probes on models ----------------------------------------------------------------------
def run_probes(
    specs: Sequence[ProbeSpec],
    forwards: Mapping[str, Forward],
    dim: int,
    max_length: int,
    max_tokens: int,
    device: torch.device,
) -> dict[str, dict]:
    """Every probe on every model of ``forwards`` ({model: forward to (B, L, dim)}, one of them
    ``teacher``); sequences truncated to ``max_length`` tokens and embedded once for all probes.
    An absent file of an ``optional`` probe gives ``{"status": "skipped", "note": ...}``."""
    from protkit.embed.embedder import pooled_embeddings

    results: dict[str, dict] = {}
    sets: dict[str, tuple[ProbeSpec, ProbeSet]] = {}
    for spec in specs:
        if spec.path.exists():
            sets[spec.name] = (spec, read_probe(spec))
        elif spec.optional:
            results[spec.name] = {"status": "skipped", "path": str(spec.path),
                                  "note": f"{spec.path} not found; optional probe skipped"}
        else:
            raise ProbeError(f"probes.{spec.name}.path: {spec.path} not found (optional: true skips a probe whose "
                             "file is absent)")
    unique = list(dict.fromkeys(s for _, probe in sets.values() for s in probe.sequences))
    row_of = {s: i for i, s in enumerate(unique)}
    tokens = [encode_one(s, max_length) for s in unique]
    poolings = sorted({spec.pooling for spec, _ in sets.values()})
    embedded = {model: pooled_embeddings(forward, tokens, poolings, dim, max_tokens, device, desc=f"probes, {model}")
                for model, forward in forwards.items()} if unique else {}
    names = {s: rid for _, probe in sets.values() for rid, s in zip(probe.ids, probe.sequences)}
    for model, per_pooling in embedded.items():
        for pooling, vectors in per_pooling.items():
            require_usable(vectors, [names[s] for s in unique], f"probes: the {model}'s {pooling} vectors")
    keep = max_residues(max_length)
    for name, (spec, probe) in sets.items():
        rows = np.array([row_of[s] for s in probe.sequences], dtype=np.int64)
        scores = score_probe(probe, {m: e[spec.pooling][rows] for m, e in embedded.items()}, spec.seed)
        results[name] = {
            "status": "ok",
            "path": str(spec.path),
            "pooling": spec.pooling,
            "n_records": probe.n_records,
            "skipped": probe.skipped,
            "n_train": int((~probe.test).sum()),
            "n_test": int(probe.test.sum()),
            "truncated": sum(len(s) > keep for s in probe.sequences) if keep is not None else 0,
            "classes": dict(sorted(Counter(probe.labels.tolist()).items())),
            "models": scores,
        }
    return {spec.name: results[spec.name] for spec in specs}
