"""Checkpoints of a distillation: save, load, resume.

Checkpoints (``step-NNNNNNNN.pt`` in the checkpoint directory, the last ``keep_checkpoints``
kept) hold model, optimizer and scheduler state, the step, the torch CPU/CUDA RNG states (dropout)
and the data position (epoch, batch index). They are plain dicts of tensors and numbers written
atomically and read with ``torch.load(weights_only=True)``. A checkpoint written under other
settings (model, training, QAT, or the training sequences and pooled targets) is refused with an
error that names the directory and the differing keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from protkit.distill.config import UNHASHED_FIELDS, TrainConfig
from protkit.distill.objectives import DistillData
from protkit.distill.qat import QATSettings
from protkit.distill.rowfiles import data_sha256
from protkit.io.atomic import atomic_path
from protkit.io.digests import flatten
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash

CHECKPOINT_FORMAT = 1


@dataclass
class TrainingProgress:
    """Training state beyond model/optimizer/scheduler that a checkpoint carries."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    losses: list[float] = field(default_factory=list)
    initial_cosine: dict[str, float] = field(default_factory=dict)  # at step 0 (after the adapter fit)
    untrained_cosine: dict[str, float] = field(default_factory=dict)  # random init, before the adapter fit
    train_seconds: float = 0.0  # optimizer steps only
    wall_seconds: float = 0.0  # steps + in-loop evaluation, summed over resumed runs
    residues: int = 0


def training_settings(
    model_config: ProtHashConfig, cfg: TrainConfig, qat: QATSettings | None, train: DistillData
) -> dict:
    """Everything that determines the trained weights (hashed into every checkpoint)."""
    training = {k: v for k, v in cfg.to_dict().items() if k not in UNHASHED_FIELDS}
    return {
        "model": model_config.to_dict(),
        "training": training,
        "qat": qat.to_dict() if qat is not None and qat.enabled else None,
        "train_data_sha256": train.data_sha256 or data_sha256(train.sequences, train.targets),
    }


def settings_hash(settings: dict) -> str:
    """sha256 of the settings as JSON (sorted keys): what a checkpoint must match to resume."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def checkpoint_files(checkpoint_dir: str | Path) -> list[Path]:
    """Checkpoint files, oldest step first."""
    return sorted(Path(checkpoint_dir).glob("step-*.pt"))


def save_checkpoint(checkpoint_dir: Path, state: dict, keep: int) -> None:
    """Write ``state`` atomically as ``step-NNNNNNNN.pt``; keep the newest ``keep`` files."""
    path = checkpoint_dir / f"step-{state['step']:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoint_files(checkpoint_dir)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(checkpoint_dir: Path, settings: dict) -> dict | None:
    """The newest checkpoint, or None; refuses one written under other settings."""
    files = checkpoint_files(checkpoint_dir)
    if not files:
        return None
    state = torch.load(files[-1], map_location="cpu", weights_only=True)
    if state.get("config_hash") != settings_hash(settings):
        theirs, ours = flatten(json.loads(state.get("settings", "{}"))), flatten(settings)
        differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ValueError(
            f"checkpoint directory {checkpoint_dir} holds {files[-1].name}, trained with other settings "
            f"(differing: {', '.join(differing) or 'unknown'}). Delete {checkpoint_dir} to start over, "
            "or restore the settings to resume."
        )
    return state


def checkpoint_state(
    model: ProtHash, optimizer: torch.optim.Optimizer, scheduler: Any, settings: dict, progress: TrainingProgress
) -> dict:
    """A checkpoint: plain tensors and numbers (loadable with ``weights_only=True``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config_hash": settings_hash(settings),
        "settings": json.dumps(settings, sort_keys=True),
        "step": progress.step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "progress": asdict(progress),
    }


def restore(state: dict, model: ProtHash, optimizer: torch.optim.Optimizer, scheduler: Any) -> TrainingProgress:
    """Load a checkpoint's states into the live objects and the RNGs; return its progress."""
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_torch"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return TrainingProgress(**state["progress"])
