"""Distil a teacher's cached embeddings into a ProtHash student: the file-level entry point.

:func:`distill_from_cache` reads a variant's settings and the teacher cache and trains it. The work
is split by job: :mod:`protkit.train_config` (``TrainConfig``), :mod:`protkit.objectives` (training
data, losses), :mod:`protkit.train_loop` (data order, schedule, the loop, evaluation),
:mod:`protkit.checkpoints` (save, load, resume) and :mod:`protkit.targets` (the cache's pooled
targets converted once into a store read a batch at a time, so memory does not grow with the
cache). The names other modules import from here are re-exported.

A re-run resumes from the newest checkpoint and ends at the same weights as an uninterrupted run
(bit-identical on CPU). A checkpoint written under other settings (model, training, QAT, or the
training sequences and pooled targets) is refused with an error that names the directory and the
differing keys: delete the directory to start over.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from protkit.checkpoints import CHECKPOINT_FORMAT, checkpoint_files
from protkit.models.prothash import PRESETS, ProtHashConfig
from protkit.objectives import DistillData, _encode, _Encoded, distill_loss
from protkit.qat import QATSettings
from protkit.train_config import OBJECTIVES, UNHASHED_FIELDS, VECTOR_POOLINGS, TrainConfig
from protkit.train_loop import (
    _optimizer, epoch_batches, evaluate, fit_adapter, length_batches, lr_factor, train, zero_residual_branches,
)  # fmt: skip

__all__ = [
    "CHECKPOINT_FORMAT", "OBJECTIVES", "UNHASHED_FIELDS", "VECTOR_POOLINGS", "DistillData", "TrainConfig",
    "_Encoded", "_encode", "_optimizer", "build_model_config", "checkpoint_files", "distill_from_cache",
    "distill_loss", "epoch_batches", "evaluate", "fit_adapter", "length_batches", "lr_factor", "train",
    "zero_residual_branches",
]  # fmt: skip


def build_model_config(
    variant_config: dict, teacher_dim: int, teacher: str | None = None, key: str = "variants.<name>"
) -> ProtHashConfig:
    """ProtHashConfig from a variant's ``preset`` and/or ``architecture`` overrides, with
    ``teacher_dim`` (and ``teacher``) taken from the teacher cache."""
    preset_name = variant_config.get("preset")
    overrides = dict(variant_config.get("architecture") or {})
    if preset_name is not None:
        if preset_name not in PRESETS:
            raise ValueError(f"{key}.preset: unknown preset {preset_name!r}; choose from {', '.join(PRESETS)}")
        base = PRESETS[preset_name].to_dict()
        if "teacher_dim" not in overrides and base["teacher_dim"] != teacher_dim:
            raise ValueError(
                f"{key}.preset {preset_name} is built for teacher_dim {base['teacher_dim']} ({base['teacher']}) "
                f"but the teacher cache has d_model {teacher_dim}; choose a matching preset or set "
                f"{key}.architecture.teacher_dim"
            )
    else:
        base = ProtHashConfig().to_dict()
    if overrides.get("teacher_dim", teacher_dim) != teacher_dim:
        raise ValueError(
            f"{key}.architecture.teacher_dim is {overrides['teacher_dim']} but the teacher cache has "
            f"d_model {teacher_dim}"
        )
    known = set(base)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{key}.architecture: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    merged = {**base, **overrides, "teacher_dim": teacher_dim}
    if teacher is not None:
        merged["teacher"] = teacher
    try:
        return ProtHashConfig.from_dict(merged)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}.architecture: {error}") from None


def distill_from_cache(
    sequences_parquet: str | Path,
    cache_dir: str | Path,
    variant_config: dict,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    tensorboard_dir: str | Path,
    device: str = "auto",
    variant_name: str = "<name>",
    clear_checkpoints: bool = True,
    targets_dir: str | Path | None = None,
) -> dict:
    """Train a variant (``preset``, ``architecture``, ``training``, ``qat`` keys) on a teacher
    cache and the dataset's ``sequences.parquet``; returns the training summary.

    The pooled targets are read through a store (:func:`protkit.targets.target_store`) in
    ``targets_dir`` (default: ``targets/`` in the checkpoint directory), built on the first run and
    reused while the cache and sequences are unchanged. Checkpoints exist to resume an interrupted
    run; with ``clear_checkpoints`` they (and the default store) are removed once the final model
    is written, so a deliberate re-run (``--forcerun distill``) trains afresh."""
    from protkit.cache import load_token_targets, read_manifest
    from protkit.targets import target_store

    key = f"variants.{variant_name}"
    manifest = read_manifest(cache_dir)
    model_config = build_model_config(variant_config, int(manifest["d_model"]), manifest.get("teacher"), key)
    training = dict(variant_config.get("training") or {})
    if training.get("max_length", manifest["max_length"]) != manifest["max_length"]:
        raise ValueError(
            f"{key}.training.max_length is {training['max_length']} but the teacher cache {cache_dir} was built "
            f"with max_length {manifest['max_length']}; the student must see the sequences the teacher saw"
        )
    train_config = TrainConfig.from_dict({**training, "max_length": manifest["max_length"]}, f"{key}.training")
    qat = QATSettings.from_dict(variant_config.get("qat"), f"{key}.qat")
    if train_config.objective == "tokens" and not manifest.get("tokens"):
        raise ValueError(
            f"{key}.training.objective is 'tokens' but the teacher cache {cache_dir} holds no per-residue "
            "embeddings; rebuild it with tokens enabled or use objective 'pooled'"
        )

    store = target_store(sequences_parquet, cache_dir, train_config.poolings,
                         targets_dir or Path(checkpoint_dir) / "targets")
    parts = {}
    for split, rows in store.splits.items():
        token_targets = None
        if train_config.objective == "tokens":
            ids = list(rows.ids)
            loaded = load_token_targets(cache_dir, ids)
            token_targets = [loaded[i] for i in ids]
        parts[split] = DistillData(rows.sequences, rows.targets, token_targets, rows.ids, rows.lengths,
                                   store.train_sha256 if split == "train" else None)
    summary = train(model_config, train_config, qat, parts["train"], parts["test"], out_dir, checkpoint_dir,
                    tensorboard_dir, device, config_key=key)
    if clear_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary
