"""The fine-tuning loop: AdamW (weight decay on matrices), linear warm-up then linear decay,
gradient clipping, one validation score per epoch, early stopping after ``patience`` epochs without
a better score (the best epoch's weights are kept), a checkpoint per epoch
(:mod:`protkit.finetune.checkpoints`), a progress bar (log lines off a terminal) and TensorBoard scalars (``train/loss``,
``train/lr``, ``valid/<metric>``, ``valid/loss``)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from protkit.finetune.batches import epoch_batches, make_batch, target_tensor, token_lengths
from protkit.finetune.checkpoints import load_checkpoint, restore_rng, rng_states, save_checkpoint
from protkit.finetune.inference import head_outputs
from protkit.finetune.metrics import comparable, score
from protkit.finetune.model import load_trainable, trainable_state
from protkit.finetune.settings import CLIP_NORM, WARMUP_FRACTION, WEIGHT_DECAY
from protkit.finetune.tasks import Example, LabelSpace
from protkit.hf.heads import head_loss
from protkit.io.progress import progress_bar
from protkit.io.tensorboard import scalar_writer

TENSORBOARD_DIR = "tensorboard"


@dataclass
class TrainingData:
    """What the loop trains on: examples, label space, truncation and the regression scaling."""

    train: list[Example]
    valid: list[Example]
    space: LabelSpace
    max_length: int
    shift: float = 0.0  # regression targets are trained as (value - shift) / scale
    scale: float = 1.0


@dataclass(frozen=True)
class Schedule:
    """The loop's options (from :class:`~protkit.finetune.settings.FinetuneSettings`)."""

    epochs: int
    lr: float
    batch_tokens: int
    seed: int
    patience: int


@dataclass
class Progress:
    """How far a run got: kept in every checkpoint."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, lr, valid_<metric>
    best_epoch: int = 0
    best_metric: float | None = None
    best_loss: float | None = None
    bad_epochs: int = 0  # epochs since the best one
    stopped_early: bool = False
    train_seconds: float = 0.0


def regression_scaling(examples: list[Example]) -> tuple[float, float]:
    """Mean and standard deviation of regression targets (1 when constant)."""
    values = np.array([e.target for e in examples], dtype=np.float64)
    return float(values.mean()), float(values.std()) or 1.0


def linear_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based): up to 1 over ``warmup`` steps, then down to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def build_optimizer(model: nn.Module, schedule: Schedule,
                    steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the trainable tensors and its warm-up/decay schedule over ``steps`` steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=schedule.lr)
    warmup = max(1, round(WARMUP_FRACTION * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_factor(step, warmup, steps))
    return optimizer, scheduler


def run_epoch(model: nn.Module, data: TrainingData, optimizer: torch.optim.Optimizer, scheduler, schedule: Schedule,
              epoch: int, device: torch.device, bar: tqdm) -> float:
    """One pass over the training examples; the mean loss per protein."""
    model.train()
    lengths = token_lengths(data.train, data.max_length)
    total, count = 0.0, 0
    for rows in epoch_batches(lengths, schedule.batch_tokens, schedule.seed, epoch):
        batch = make_batch(data.train, rows, data.space, data.max_length, data.shift, data.scale).to(device)
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], CLIP_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total, count = total + loss.item() * len(rows), count + len(rows)
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    return total / max(count, 1)


def outputs_loss(data: TrainingData, examples: list[Example], outputs: list[np.ndarray]) -> float:
    """The training loss of a head's ``outputs`` (see :func:`~protkit.finetune.inference.head_outputs`)."""
    if data.space.task == "tokens":
        logits = torch.from_numpy(np.concatenate(outputs))  # (residues, C)
        targets = torch.tensor(np.concatenate([np.asarray(e.target[: len(o)]) for e, o in zip(examples, outputs)]))
    else:
        logits = torch.from_numpy(np.stack(outputs))  # (N, C)
        targets = target_tensor([e.target for e in examples], data.space, 0, data.shift, data.scale)
    return float(head_loss(logits, targets, data.space.problem_type))


def validation(model: nn.Module, data: TrainingData, schedule: Schedule,
               device: torch.device) -> tuple[float | None, float | None]:
    """The early-stopping metric and the loss on the validation examples (None without any)."""
    if not data.valid:
        return None, None
    outputs = head_outputs(model, [e.sequence for e in data.valid], data.space.task == "tokens", data.max_length,
                           schedule.batch_tokens, device)
    return score(data.space, data.valid, outputs)[data.space.metric], outputs_loss(data, data.valid, outputs)


def record_epoch(progress: Progress, epoch: int, train_loss: float, lr: float, valid: tuple[float | None, float | None],
                 metric_name: str, patience: int) -> bool:
    """Add an epoch to ``progress``; True when it is the best so far: a better validation metric, or
    an equal one at a lower validation loss (always, without validation)."""
    metric, loss = valid
    progress.epochs_done = epoch + 1
    progress.history.append({"epoch": epoch + 1, "train_loss": train_loss, "lr": lr, f"valid_{metric_name}": metric,
                             "valid_loss": loss})
    has_valid = loss is not None
    best = (comparable(progress.best_metric), -(progress.best_loss if progress.best_loss is not None else math.inf))
    improved = not has_valid or progress.best_epoch == 0 or (comparable(metric), -loss) > best
    if improved:
        progress.best_epoch, progress.best_metric, progress.best_loss, progress.bad_epochs = epoch + 1, metric, loss, 0
    else:
        progress.bad_epochs += 1
    progress.stopped_early = has_valid and patience > 0 and progress.bad_epochs >= patience
    return improved


def train(model: nn.Module, data: TrainingData, schedule: Schedule, work: Path, run_settings: dict,
          device: torch.device) -> Progress:
    """Train ``model`` in place, resuming from ``work``'s checkpoint; at the end the model holds the
    best epoch's weights. Returns the progress (learning curve, best epoch)."""
    per_epoch = len(epoch_batches(token_lengths(data.train, data.max_length), schedule.batch_tokens, schedule.seed, 0))
    optimizer, scheduler = build_optimizer(model, schedule, per_epoch * schedule.epochs)
    progress, best = Progress(), trainable_state(model)
    state = load_checkpoint(work, run_settings)
    if state is not None:
        load_trainable(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state)
        progress, best = Progress(**json.loads(state["progress"])), state["best_model"]
    writer = scalar_writer(work / TENSORBOARD_DIR)
    metric_name = data.space.metric
    with progress_bar(total=per_epoch * schedule.epochs, initial=per_epoch * progress.epochs_done, unit="batch",
                      desc="fine-tuning") as bar:
        while progress.epochs_done < schedule.epochs and not progress.stopped_early:
            epoch, started = progress.epochs_done, time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            loss = run_epoch(model, data, optimizer, scheduler, schedule, epoch, device, bar)
            metric, valid_loss = validation(model, data, schedule, device)
            if record_epoch(progress, epoch, loss, lr, (metric, valid_loss), metric_name, schedule.patience):
                best = trainable_state(model)
            progress.train_seconds += time.perf_counter() - started
            save_checkpoint(work, progress.epochs_done, {"model": trainable_state(model), "best_model": best,
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "progress": json.dumps(asdict(progress)), **rng_states()}, run_settings)
            writer.add_scalar("train/loss", loss, epoch + 1)
            writer.add_scalar("train/lr", lr, epoch + 1)
            if metric is not None:
                writer.add_scalar(f"valid/{metric_name}", metric, epoch + 1)
                writer.add_scalar("valid/loss", valid_loss, epoch + 1)
            writer.flush()
    writer.close()
    load_trainable(model, best)
    return progress
