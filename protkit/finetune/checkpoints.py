"""Resuming a killed fine-tuning run: one checkpoint per finished epoch in ``OUTPUT.partial/``.

A checkpoint (``epoch-NNNN.pt``, only the newest kept) is a plain dict of tensors, numbers and
strings, written atomically (:func:`protkit.io.atomic.atomic_path`) and read with
``torch.load(weights_only=True)``: the trainable tensors now and at the best epoch, the optimizer
and scheduler states, the torch RNG states, the progress (epochs done, learning curve, best epoch,
epochs without improvement) and the sha256 of the run's settings (model weights, training file,
labels, every option that changes the weights). The settings are also in ``run.json``, so that a run
with other settings is refused at once, naming the settings that differ (a checkpoint of other
settings too); a re-run of the same command continues where the last epoch ended.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from protkit.finetune.errors import FinetuneError
from protkit.io.atomic import atomic_path, write_json
from protkit.io.digests import flatten, json_sha256

CHECKPOINT_FORMAT = 1
CHECKPOINT_GLOB = "epoch-*.pt"
RUN_FILE = "run.json"  # the settings of the run that owns the work directory


def checkpoint_path(work: Path, epoch: int) -> Path:
    return work / f"epoch-{epoch:04d}.pt"


def checkpoint_files(work: Path) -> list[Path]:
    """Checkpoints in ``work``, oldest first."""
    return sorted(work.glob(CHECKPOINT_GLOB))


def save_checkpoint(work: Path, epoch: int, state: dict, settings: dict) -> Path:
    """Write ``state`` (plus the format and the settings and their hash) as the checkpoint of
    ``epoch`` finished epochs; older checkpoints are removed."""
    path = checkpoint_path(work, epoch)
    state = {**state, "format": CHECKPOINT_FORMAT, "epoch": epoch, "settings_sha256": json_sha256(settings),
             "settings": json.dumps(settings, sort_keys=True)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoint_files(work):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(work: Path, settings: dict) -> dict | None:
    """The newest checkpoint in ``work`` (None when there is none); FinetuneError when it was written
    under other settings or cannot be read."""
    files = checkpoint_files(work)
    if not files:
        return None
    try:
        state = torch.load(files[-1], map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: atomic writes make this rare (a disk fault)
        raise FinetuneError(f"{files[-1]}: unreadable checkpoint ({type(err).__name__}); delete {work} to start "
                            "over") from None
    if state.get("format") == CHECKPOINT_FORMAT and state.get("settings_sha256") == json_sha256(settings):
        return state
    raise refuse_other_settings(work, files[-1].name, json.loads(state.get("settings", "{}")), settings)


def refuse_other_settings(work: Path, name: str, theirs: dict, ours: dict) -> FinetuneError:
    """The error for a work directory (its file ``name``) of a run with other settings, naming what differs."""
    theirs, ours = flatten(theirs), flatten(ours)
    differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return FinetuneError(f"{work} holds {name} of a run with other settings (differing: "
                         f"{', '.join(differing) or 'the checkpoint format'}); re-run with the same options to resume "
                         f"it, or add --no-resume (or delete {work}) to start over")


def open_work(work: Path, settings: dict, resume: bool) -> None:
    """Make the work directory of a run with ``settings`` (``resume=False``: an older one is discarded);
    FinetuneError at once when it holds the run of other settings."""
    if not resume:
        discard(work)
    run_file = work / RUN_FILE
    if run_file.is_file():
        try:
            theirs = json.loads(run_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            theirs = None  # damaged: the checkpoints' own hashes still decide
        if theirs is not None and theirs != json.loads(json.dumps(settings)):
            raise refuse_other_settings(work, RUN_FILE, theirs, settings)
    work.mkdir(parents=True, exist_ok=True)
    write_json(run_file, settings)


def discard(work: Path) -> None:
    """Remove a work directory (a finished run, or --no-resume)."""
    shutil.rmtree(work, ignore_errors=True)


def rng_states() -> dict[str, Any]:
    return {"rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["rng_torch"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
