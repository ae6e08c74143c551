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

from protkit.distill.config import CacheFacts, TrainConfig, variant_settings
from protkit.distill.loop import train
from protkit.distill.objectives import DistillData
from protkit.distill.store import TargetStore, target_store
from protkit.io.outputs import claim_outputs
from protkit.teacher.layout import read_manifest
from protkit.teacher.read import load_token_targets


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

    The pooled targets are read through a store (:func:`protkit.distill.store.target_store`) in
    ``targets_dir`` (default: ``targets/`` in the checkpoint directory), built on the first run and
    reused while the cache and sequences are unchanged. Checkpoints exist to resume an interrupted
    run; with ``clear_checkpoints`` they (and the default store) are removed once the final model
    is written, so a deliberate re-run (``--forcerun distill``) trains afresh."""
    key = f"variants.{variant_name}"
    manifest = read_manifest(cache_dir)
    cache = CacheFacts(int(manifest["d_model"]), manifest.get("teacher"), manifest["max_length"],
                       manifest["poolings"], bool(manifest.get("tokens")))
    settings = variant_settings(variant_config, cache, key)
    with claim_outputs(directories=[out_dir, checkpoint_dir], inputs=[sequences_parquet, cache_dir]):
        store = target_store(sequences_parquet, cache_dir, settings.training.poolings,
                             targets_dir or Path(checkpoint_dir) / "targets")
        splits = {split: _split_data(store, split, cache_dir, settings.training) for split in store.splits}
        summary = train(settings.model, settings.training, settings.qat, splits["train"], splits["test"], out_dir,
                        checkpoint_dir, tensorboard_dir, device, config_key=key)
    if clear_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary


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
