"""The training loop of a distillation: the student's start, steps, checkpoints, the summary.

Gradient accumulation, gradient clipping, bf16 autocast on CUDA only; the schedule and data order
are :mod:`protkit.distill.schedule`'s, the start :mod:`protkit.distill.start`'s.

A re-run resumes from the newest checkpoint (:mod:`protkit.distill.checkpoints`) and ends at the same
weights as an uninterrupted run (bit-identical on CPU). ``eval_every``, ``checkpoint_every`` and
``keep_checkpoints`` do not change the weights and may differ. The summary's held-out cosine after
training is that of the saved float model; with QAT, the fake-quantized model's is reported under
``qat``. Nothing here holds a float32 copy of the targets: batches, the adapter fit and the
evaluation read their rows when they need them (:mod:`protkit.distill.store`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from protkit.distill.checkpoints import (
    TrainingProgress, checkpoint_state, load_checkpoint, restore, save_checkpoint, settings_hash, training_settings,
)  # fmt: skip
from protkit.distill.config import TrainConfig
from protkit.distill.objectives import DistillData, EncodedSplit, Rows, distill_loss, encode_split, heldout_cosine
from protkit.distill.qat import QATSettings, convert_qat, prepare_qat
from protkit.distill.schedule import batch_stream, build_optimizer, build_scheduler
from protkit.distill.start import fit_adapter, zero_residual_branches
from protkit.io.atomic import write_json
from protkit.io.progress import progress_bar
from protkit.io.tensorboard import scalar_writer
from protkit.models.device import resolve_device
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.models.prothash_v1.config import StagedConfig

log = logging.getLogger(__name__)


def train(
    model_config: ProtHashConfig,
    train_config: TrainConfig,
    qat: QATSettings | None,
    train_data: DistillData,
    test_data: DistillData,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    tensorboard_dir: str | Path,
    device: str | torch.device = "auto",
    *,
    on_step: Callable[[int], None] | None = None,
    config_key: str = "variants.<name>",
) -> dict:
    """Distil into a new ProtHash, resuming from ``checkpoint_dir`` when it holds a checkpoint.

    Writes ``config.json``, ``model.safetensors`` and ``training_summary.json`` into ``out_dir``
    and TensorBoard scalars (``train/loss``, ``train/lr``, ``train/grad_norm``,
    ``eval/cosine_<pooling>``) into ``tensorboard_dir``. ``on_step(step)`` runs after every
    optimizer step (after that step's checkpoint). ``config_key`` prefixes config errors.
    Returns the summary.
    """
    cfg = train_config
    device, autocast, max_length, train_enc, test_enc = prepare_training(model_config, cfg, train_data, test_data,
                                                                         device, config_key)
    qat = qat if qat is not None and qat.enabled else None
    torch.manual_seed(cfg.seed)
    model = ProtHash(model_config)
    if qat is not None:
        prepare_qat(model, qat, f"{config_key}.qat")
    run = TrainingRun(model, cfg, training_settings(model_config, cfg, qat, train_data), Path(checkpoint_dir), device,
                      qat=qat)

    def initialise() -> None:  # the composition-linear start (protkit.distill.start)
        if cfg.residual_init == "zero":
            zero_residual_branches(model)
        if cfg.adapter_init == "ridge":
            fit_adapter(model, train_enc, cfg, device)

    objective = Objective(
        loss=lambda rows: distill_loss(model, train_enc, rows, cfg, device, autocast),
        heldout=lambda: heldout_cosine(model, test_enc, cfg, device, autocast),
        lengths=train_enc.lengths, residues=train_enc.residues, initialise=initialise,
    )
    summary = run.train(objective, out_dir, tensorboard_dir, on_step)
    summary.update(n_train=len(train_data), n_test=len(test_data), max_length=max_length)
    write_json(Path(out_dir) / "training_summary.json", summary)
    return summary


def prepare_training(
    model_config: ProtHashConfig | StagedConfig, cfg: TrainConfig, train_data: DistillData, test_data: DistillData,
    device: str | torch.device, config_key: str,
) -> tuple[torch.device, bool, int, EncodedSplit, EncodedSplit]:
    """The training device, whether to autocast to bf16 (``training.bf16``, on CUDA only), the training
    ``max_length`` and both splits encoded at it."""
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    max_length = training_max_length(model_config, cfg, config_key)
    train_enc = encode_split(train_data, max_length, cfg, model_config.teacher_dim, "train", config_key)
    test_enc = encode_split(test_data, max_length, cfg, model_config.teacher_dim, "test", config_key)
    return device, cfg.bf16 and device.type == "cuda", max_length, train_enc, test_enc


def training_max_length(model_config: ProtHashConfig | StagedConfig, cfg: TrainConfig, config_key: str) -> int:
    """Tokens per sequence: the training's ``max_length``, at most the model's context length."""
    max_length = cfg.max_length or model_config.context_length
    if max_length > model_config.context_length:
        raise ValueError(
            f"{config_key}.training.max_length ({max_length}) exceeds the model's context_length "
            f"({model_config.context_length}); raise {config_key}.architecture.context_length"
        )
    return max_length


@dataclass
class Objective:
    """What a :class:`TrainingRun` trains on: the loss of a micro-batch of training rows, the held-out
    scores, the training split's token counts (batching) and residues, and the step-0 set-up."""

    loss: Callable[[Rows], torch.Tensor]  # scalar
    heldout: Callable[[], dict[str, float]]
    lengths: np.ndarray  # (N,) token counts of the training split
    residues: Callable[[Rows], int]
    initialise: Callable[[], None] = lambda: None


class TrainingRun:
    """One distillation's live objects: model, optimizer, schedule and progress. The caller seeds
    torch (``training.seed``) and builds the model (and its QAT layers) first."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, settings: dict, checkpoint_dir: Path,
                 device: torch.device, qat: QATSettings | None = None):
        self.model, self.cfg, self.qat, self.settings, self.checkpoint_dir = model, cfg, qat, settings, checkpoint_dir
        self.device = device
        self.model.to(device).train()
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.progress = TrainingProgress()

    def train(self, objective: Objective, out_dir: str | Path, tensorboard_dir: str | Path,
              on_step: Callable[[int], None] | None = None) -> dict:
        """Start or resume, step to ``max_steps``, save the model into ``out_dir``; returns the summary
        (the caller adds to it and writes ``training_summary.json``)."""
        resumed_from = self.start(objective)
        writer = scalar_writer(tensorboard_dir, purge_step=resumed_from)
        try:
            if resumed_from is None:
                log_eval(writer, self.progress.initial_cosine, 0)
            self.steps(objective, writer, on_step)
            summary = self.finish(objective, writer, out_dir)
        finally:
            writer.close()
        summary.update(resumed_from_step=resumed_from, device=str(self.device),
                       config_hash=settings_hash(self.settings))
        return summary

    def start(self, objective: Objective) -> int | None:
        """Resume from the newest checkpoint (returns its step), or set up step 0 (returns None)."""
        state = load_checkpoint(self.checkpoint_dir, self.settings)
        if state is not None:
            self.progress = restore(state, self.model, self.optimizer, self.scheduler)
            log.info("resuming from %s at step %d", self.checkpoint_dir, self.progress.step)
            return self.progress.step
        untrained = objective.heldout()
        objective.initialise()
        self.progress = TrainingProgress(initial_cosine=objective.heldout(), untrained_cosine=untrained)
        return None

    def steps(self, objective: Objective, writer: Any, on_step: Callable[[int], None] | None) -> None:
        """Optimizer steps from ``progress.step`` to ``max_steps`` (updates ``progress`` in place)."""
        model, optimizer, scheduler, cfg, progress = self.model, self.optimizer, self.scheduler, self.cfg, self.progress
        stream = batch_stream(objective.lengths, cfg, progress.epoch, progress.batch_index)
        params = list(model.parameters())
        with progress_bar(total=cfg.max_steps, initial=progress.step, desc="distil", unit="step") as bar:
            while progress.step < cfg.max_steps:
                started = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for _ in range(cfg.grad_accum):
                    epoch, index, rows = next(stream)
                    loss = objective.loss(rows) / cfg.grad_accum
                    loss.backward()
                    step_loss += loss.item()
                    progress.residues += objective.residues(rows)
                if not math.isfinite(step_loss):
                    raise FloatingPointError(
                        f"training loss is {step_loss} at step {progress.step + 1}; lower training.lr or raise "
                        "training.warmup_steps (the last checkpoint in the checkpoint directory is still valid)"
                    )
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm or math.inf)
                optimizer.step()
                scheduler.step()
                progress.step, progress.epoch, progress.batch_index = progress.step + 1, epoch, index + 1
                progress.losses.append(step_loss)
                progress.train_seconds += time.perf_counter() - started
                writer.add_scalar("train/loss", step_loss, progress.step)
                writer.add_scalar("train/lr", lr, progress.step)
                writer.add_scalar("train/grad_norm", float(grad_norm), progress.step)
                if progress.step % cfg.eval_every == 0:
                    log_eval(writer, objective.heldout(), progress.step)
                progress.wall_seconds += time.perf_counter() - started
                last = progress.step == cfg.max_steps
                if cfg.checkpoint_every and (progress.step % cfg.checkpoint_every == 0 or last):
                    save_checkpoint(self.checkpoint_dir, checkpoint_state(model, optimizer, scheduler, self.settings,
                                                                           progress), cfg.keep_checkpoints)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", epoch=epoch)
                if on_step is not None:
                    on_step(progress.step)

    def finish(self, objective: Objective, writer: Any, out_dir: str | Path) -> dict:
        """Convert QAT layers back to float, evaluate, save the model; return the summary."""
        model, qat, cfg, progress = self.model, self.qat, self.cfg, self.progress
        qat_info: dict[str, Any] = {"enabled": False}
        if qat is not None:
            qat_info = {**qat.to_dict(), "heldout_cosine_fake_quant": objective.heldout()}
            convert_qat(model)
        final = objective.heldout()
        if progress.step % cfg.eval_every:
            log_eval(writer, final, progress.step)
        model.save_pretrained(out_dir)
        return {
            "steps": progress.step,
            "epoch": progress.epoch,  # 0-based epoch of the last micro-batch
            "objective": cfg.objective,
            "poolings": list(cfg.poolings),
            "train_loss_start": _window_mean(progress.losses, first=True),
            "train_loss_end": _window_mean(progress.losses, first=False),
            "train_loss_last": progress.losses[-1] if progress.losses else None,
            "heldout_cosine_initial": progress.initial_cosine,
            "heldout_cosine_untrained": progress.untrained_cosine,
            "heldout_cosine_final": final,
            "train_seconds": progress.train_seconds,
            "wall_seconds": progress.wall_seconds,
            "residues_seen": progress.residues,
            "residues_per_second": progress.residues / progress.train_seconds if progress.train_seconds else None,
            "num_params": model.num_params,
            "qat": qat_info,
            "training": cfg.to_dict(),
        }


def log_eval(writer: Any, cosine: dict[str, float], step: int) -> None:
    for name, value in cosine.items():
        writer.add_scalar(f"eval/cosine_{name}", value, step)
    log.info("step %d held-out cosine: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in cosine.items()))


def _window_mean(values: list[float], first: bool) -> float | None:
    if not values:
        return None
    width = max(1, min(50, len(values) // 10))
    window = values[:width] if first else values[-width:]
    return float(sum(window) / len(window))
