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
from pathlib import Path
from typing import Any, Callable

import torch

from protkit.distill.checkpoints import (
    TrainingProgress, checkpoint_state, load_checkpoint, restore, save_checkpoint, settings_hash, training_settings,
)  # fmt: skip
from protkit.distill.config import TrainConfig
from protkit.distill.objectives import DistillData, EncodedSplit, distill_loss, encode_split, heldout_cosine
from protkit.distill.qat import QATSettings, convert_qat, prepare_qat
from protkit.distill.schedule import batch_stream, build_optimizer, build_scheduler
from protkit.distill.start import fit_adapter, zero_residual_branches
from protkit.io.atomic import write_json
from protkit.io.progress import progress_bar
from protkit.models.device import resolve_device
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash

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
    from torch.utils.tensorboard import SummaryWriter

    cfg = train_config
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    autocast = cfg.bf16 and device.type == "cuda"
    max_length = _max_length(model_config, cfg, config_key)
    train_enc = encode_split(train_data, max_length, cfg, model_config.teacher_dim, "train", config_key)
    test_enc = encode_split(test_data, max_length, cfg, model_config.teacher_dim, "test", config_key)
    qat = qat if qat is not None and qat.enabled else None
    settings = training_settings(model_config, cfg, qat, train_data)
    run = _Run(model_config, cfg, qat, settings, Path(checkpoint_dir), device, autocast, config_key)
    resumed_from = run.start(train_enc, test_enc)

    writer = SummaryWriter(str(tensorboard_dir), purge_step=resumed_from)
    try:
        if resumed_from is None:
            _log_eval(writer, run.progress.initial_cosine, 0)
        run.steps(train_enc, test_enc, writer, on_step)
        summary = run.finish(test_enc, writer, out_dir)
    finally:
        writer.close()
    summary.update(resumed_from_step=resumed_from, device=str(device), n_train=len(train_data),
                   n_test=len(test_data), config_hash=settings_hash(settings), max_length=max_length)
    write_json(Path(out_dir) / "training_summary.json", summary)
    return summary


def _max_length(model_config: ProtHashConfig, cfg: TrainConfig, config_key: str) -> int:
    """Tokens per sequence: the training's ``max_length``, at most the model's context length."""
    max_length = cfg.max_length or model_config.context_length
    if max_length > model_config.context_length:
        raise ValueError(
            f"{config_key}.training.max_length ({max_length}) exceeds the model's context_length "
            f"({model_config.context_length}); raise {config_key}.architecture.context_length"
        )
    return max_length


class _Run:
    """One distillation's live objects: model, optimizer, schedule and progress."""

    def __init__(self, model_config: ProtHashConfig, cfg: TrainConfig, qat: QATSettings | None, settings: dict,
                 checkpoint_dir: Path, device: torch.device, autocast: bool, config_key: str):
        self.cfg, self.qat, self.settings, self.checkpoint_dir = cfg, qat, settings, checkpoint_dir
        self.device, self.autocast = device, autocast
        torch.manual_seed(cfg.seed)
        self.model = ProtHash(model_config)
        if qat is not None:
            prepare_qat(self.model, qat, f"{config_key}.qat")
        self.model.to(device).train()
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.progress = TrainingProgress()

    def heldout(self, enc: EncodedSplit) -> dict[str, float]:
        return heldout_cosine(self.model, enc, self.cfg, self.device, self.autocast)

    def start(self, train_enc: EncodedSplit, test_enc: EncodedSplit) -> int | None:
        """Resume from the newest checkpoint (returns its step), or set up step 0 (returns None)."""
        state = load_checkpoint(self.checkpoint_dir, self.settings)
        if state is not None:
            self.progress = restore(state, self.model, self.optimizer, self.scheduler)
            log.info("resuming from %s at step %d", self.checkpoint_dir, self.progress.step)
            return self.progress.step
        untrained = self.heldout(test_enc)
        if self.cfg.residual_init == "zero":
            zero_residual_branches(self.model)
        if self.cfg.adapter_init == "ridge":
            fit_adapter(self.model, train_enc, self.cfg, self.device)
        self.progress = TrainingProgress(initial_cosine=self.heldout(test_enc), untrained_cosine=untrained)
        return None

    def steps(self, train_enc: EncodedSplit, test_enc: EncodedSplit, writer: Any,
              on_step: Callable[[int], None] | None) -> None:
        """Optimizer steps from ``progress.step`` to ``max_steps`` (updates ``progress`` in place)."""
        model, optimizer, scheduler, cfg, progress = self.model, self.optimizer, self.scheduler, self.cfg, self.progress
        device, autocast = self.device, self.autocast
        stream = batch_stream(train_enc.lengths, cfg, progress.epoch, progress.batch_index)
        params = list(model.parameters())
        with progress_bar(total=cfg.max_steps, initial=progress.step, desc="distil", unit="step") as bar:
            while progress.step < cfg.max_steps:
                started = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for _ in range(cfg.grad_accum):
                    epoch, index, rows = next(stream)
                    loss = distill_loss(model, train_enc, rows, cfg, device, autocast) / cfg.grad_accum
                    loss.backward()
                    step_loss += loss.item()
                    progress.residues += train_enc.residues(rows)
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
                    _log_eval(writer, self.heldout(test_enc), progress.step)
                progress.wall_seconds += time.perf_counter() - started
                if cfg.checkpoint_every and (progress.step % cfg.checkpoint_every == 0 or progress.step == cfg.max_steps):
                    save_checkpoint(self.checkpoint_dir, checkpoint_state(model, optimizer, scheduler, self.settings,
                                                                           progress), cfg.keep_checkpoints)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", epoch=epoch)
                if on_step is not None:
                    on_step(progress.step)

    def finish(self, test_enc: EncodedSplit, writer: Any, out_dir: str | Path) -> dict:
        """Convert QAT layers back to float, evaluate, save the model; return the summary."""
        model, qat, cfg, progress = self.model, self.qat, self.cfg, self.progress
        qat_info: dict[str, Any] = {"enabled": False}
        if qat is not None:
            qat_info = {**qat.to_dict(), "heldout_cosine_fake_quant": self.heldout(test_enc)}
            convert_qat(model)
        final = self.heldout(test_enc)
        if progress.step % cfg.eval_every:
            _log_eval(writer, final, progress.step)
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


def _log_eval(writer: Any, cosine: dict[str, float], step: int) -> None:
    for name, value in cosine.items():
        writer.add_scalar(f"eval/cosine_{name}", value, step)
    log.info("step %d held-out cosine: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in cosine.items()))


def _window_mean(values: list[float], first: bool) -> float | None:
    if not values:
        return None
    width = max(1, min(50, len(values) // 10))
    window = values[:width] if first else values[-width:]
    return float(sum(window) / len(window))
