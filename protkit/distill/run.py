"""Distil a teacher's cached embeddings into a ProtHash student: the distill stage's entry point
(``workflow/rules/distill.smk``).

:func:`distill_from_cache` reads a variant's settings and the teacher cache and trains it. The work
is split by job: :mod:`.config` (the variant's settings), :mod:`.objectives` (training data,
losses), :mod:`.schedule` (learning rate, data order), :mod:`.start` (the student at step 0),
:mod:`.loop` (the steps), :mod:`.checkpoints` (save, load, resume), :mod:`.qat` and :mod:`.store`
(the cache's pooled targets converted once into a store read a batch at a time, so memory does not
grow with the cache).

A re-run resumes from the newest checkpoint and ends at the same weights as an uninterrupted run
(bit-identical on CPU). A checkpoint written under other settings (model, training, QAT, or the
training sequences and pooled targets) is refused with an error that names the directory and the
differing keys: delete the directory to start over.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch

from protkit.distill.config import CacheFacts, TrainConfig, VariantSettings, variant_settings
from protkit.distill.loop import train
from protkit.distill.objectives import DistillData
from protkit.distill.rowfiles import data_sha256
from protkit.distill.staged import CachedStages, StageTargetSource, TeacherStages, train_staged
from protkit.distill.store import TargetStore, target_store
from protkit.io.digests import json_sha256
from protkit.io.outputs import claim_outputs
from protkit.models.device import DTYPES
from protkit.models.precision import resolve_precision
from protkit.teacher.layout import StageOptions, read_manifest
from protkit.teacher.loading import teacher_from_config
from protkit.teacher.read import StageTokenTargets, load_token_targets
from protkit.teacher.stage_targets import stage_layers_for


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
    teacher: dict | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Train a variant (``preset``, ``architecture``, ``training``, ``qat`` keys) on a teacher
    cache and the dataset's ``sequences.parquet``; returns the training summary.

    The pooled targets are read through a store (:func:`protkit.distill.store.target_store`) in
    ``targets_dir`` (default: ``targets/`` in the checkpoint directory), built on the first run and
    reused while the cache and sequences are unchanged. Checkpoints exist to resume an interrupted
    run; with ``clear_checkpoints`` they (and the default store) are removed once the final model
    is written, so a deliberate re-run (``--forcerun distill``) trains afresh.

    A ProtHash 1.0 variant (``architecture.family: v1``) trains with the stages objective
    (:mod:`protkit.distill.staged`); with ``training.stage_targets: teacher`` the teacher runs beside
    it, loaded from ``teacher`` (the teacher's config section, its ``weights`` as a loadable spec).
    ``on_step(step)`` runs after every optimizer step (tests stop a run there)."""
    key = f"variants.{variant_name}"
    manifest = read_manifest(cache_dir)
    stages = StageOptions.of(manifest)
    cache = CacheFacts(int(manifest["d_model"]), manifest.get("teacher"), manifest["max_length"],
                       manifest["poolings"], bool(manifest.get("tokens")), stages.layers if stages.tokens else (),
                       stages.logits)
    settings = variant_settings(variant_config, cache, key)
    with claim_outputs(directories=[out_dir, checkpoint_dir], inputs=[sequences_parquet, cache_dir]):
        store = target_store(sequences_parquet, cache_dir, settings.training.poolings,
                             targets_dir or Path(checkpoint_dir) / "targets")
        if settings.staged:
            source, origin = stage_source(settings, cache_dir, manifest, teacher, key)
            splits = {split: _staged_split_data(store, split, origin) for split in store.splits}
            summary = train_staged(settings.model, settings.training, splits["train"], splits["test"], source,
                                   out_dir, checkpoint_dir, tensorboard_dir, device, on_step=on_step,
                                   config_key=key)
        else:
            splits = {split: _split_data(store, split, cache_dir, settings.training) for split in store.splits}
            summary = train(settings.model, settings.training, settings.qat, splits["train"], splits["test"],
                            out_dir, checkpoint_dir, tensorboard_dir, device, on_step=on_step, config_key=key)
    if clear_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary


def stage_source(settings: VariantSettings, cache_dir: str | Path, manifest: dict, teacher: dict | None,
                 key: str) -> tuple[StageTargetSource | Callable[[torch.device], StageTargetSource], list]:
    """Where a v1 variant's stage targets come from (:mod:`protkit.distill.staged`), and what
    identifies them (hashed into its checkpoints): the cache's fingerprint and layers, or the
    teacher's weights and layers."""
    training = settings.training
    if training.stage_targets == "cache":
        layers = training.teacher_layers or StageOptions.of(manifest).layers
        logits = settings.model.mlm_head and training.logits_weight > 0
        reader = StageTokenTargets(cache_dir, layers, logits)
        return CachedStages(reader), ["cache", manifest.get("fingerprint"), list(layers), logits]
    if teacher is None:
        raise ValueError(f"{key}.training.stage_targets is 'teacher' but no teacher was given to run beside the "
                         "student")
    precision = teacher.get("precision", "auto")  # resolved for the device training runs on (on_device)
    model, weights_sha256 = teacher_from_config(teacher["weights"], random=teacher.get("random"), device="cpu",
                                                dtype="fp32")
    try:
        layers = stage_layers_for(teacher["weights"], model.config.n_layers, training.teacher_layers)
    except ValueError as err:
        raise ValueError(f"{key}.training.teacher_layers: {err}") from None

    def on_device(device: torch.device) -> StageTargetSource:
        dtype = DTYPES[resolve_precision(precision, device, "teacher")]
        return TeacherStages(model.to(device=device, dtype=dtype), layers)

    return on_device, ["teacher", weights_sha256, list(layers)]


def _staged_split_data(store: TargetStore, split: str, origin: list) -> DistillData:
    """One split's sequences for the stages objective; its fingerprint covers where the targets come from."""
    rows = store.splits[split]
    sha = json_sha256([data_sha256(rows.sequences, {}), origin]) if split == "train" else None
    return DistillData(rows.sequences, {}, None, rows.ids, rows.lengths, sha)


def _split_data(store: TargetStore, split: str, cache_dir: str | Path, training: TrainConfig) -> DistillData:
    """One split of the store as training data (with per-residue targets for the ``tokens`` objective)."""
    rows = store.splits[split]
    token_targets = None
    if training.objective == "tokens":
        ids = list(rows.ids)
        loaded = load_token_targets(cache_dir, ids)
        token_targets = [loaded[i] for i in ids]
    return DistillData(rows.sequences, rows.targets, token_targets, rows.ids, rows.lengths,
                       store.train_sha256 if split == "train" else None)
