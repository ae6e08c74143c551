"""The training loop of a distillation: data order, schedule, the student's start, steps, evaluation.

Training: AdamW (no weight decay on 1-D parameters: norms, biases), linear warm-up then cosine
decay, gradient accumulation, gradient clipping, bf16 autocast on CUDA only. Each epoch draws a
new length-bucketed batching (random tie-breaks among equal lengths) and a new batch order from a
numpy generator seeded with ``(seed, epoch)``, so the data order is a pure function of
``(seed, epoch, batch index)`` and needs no generator state. Epochs repeat until ``max_steps``.

A re-run resumes from the newest checkpoint (:mod:`protkit.checkpoints`) and ends at the same
weights as an uninterrupted run (bit-identical on CPU). ``eval_every``, ``checkpoint_every`` and
``keep_checkpoints`` do not change the weights and may differ. The summary's held-out cosine after
training is that of the saved float model; with QAT, the fake-quantized model's is reported under
``qat``. Nothing here holds a float32 copy of the targets: batches, the adapter fit and the
evaluation read their rows when they need them (:mod:`protkit.targets`).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from protkit.atomic import write_json
from protkit.checkpoints import (
    _checkpoint_state, _hash, _load_checkpoint, _Progress, _restore, _save_checkpoint, _settings,
)  # fmt: skip
from protkit.device import resolve_device
from protkit.models.prothash import ProtHash, ProtHashConfig
from protkit.objectives import DistillData, _encode, _Encoded, _teacher_space, distill_loss
from protkit.pooling import pool
from protkit.qat import QATSettings, convert_qat, prepare_qat
from protkit.train_config import TrainConfig

log = logging.getLogger(__name__)

ADAPTER_BLOCK_BYTES = 16 << 20  # float64 features + targets the adapter fit holds at once


# --- schedule and data order -----------------------------------------------------------------
def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based): linear warm-up over
    ``warmup_steps`` steps to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def length_batches(
    lengths: Sequence[int] | np.ndarray, max_tokens: int, max_batch_size: int | None = None
) -> list[np.ndarray]:
    """:func:`protkit.batching.token_budget_batches` with numpy: the same batches (longest first,
    ties by index, ``rows * longest <= max_tokens``), as index arrays, without a Python object per row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    longest = lengths[order]
    batches, start = [], 0
    while start < len(order):
        size = max(1, max_tokens // int(longest[start]))
        if max_batch_size is not None:
            size = max(1, min(size, max_batch_size))
        batches.append(order[start : start + size])
        start += size
    return batches


def epoch_batches(lengths: Sequence[int] | np.ndarray, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    """Length-bucketed micro-batches for ``epoch``, in a shuffled order (a function of seed and epoch)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(len(lengths))  # random tie-breaks among equal lengths
    batches = [perm[b] for b in length_batches(np.asarray(lengths)[perm], cfg.batch_tokens, cfg.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _batch_stream(
    lengths: np.ndarray, cfg: TrainConfig, epoch: int, index: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Endless ``(epoch, batch index, rows)`` from a data position, epoch after epoch."""
    while True:
        batches = epoch_batches(lengths, cfg, epoch)
        for i in range(index, len(batches)):
            yield epoch, i, batches[i]
        epoch, index = epoch + 1, 0


def _optimizer(model: ProtHash, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        return lr_factor(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _window_mean(values: list[float], first: bool) -> float | None:
    if not values:
        return None
    width = max(1, min(50, len(values) // 10))
    window = values[:width] if first else values[-width:]
    return float(sum(window) / len(window))


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
    max_length = cfg.max_length or model_config.context_length
    if max_length > model_config.context_length:
        raise ValueError(
            f"{config_key}.training.max_length ({max_length}) exceeds the model's context_length "
            f"({model_config.context_length}); raise {config_key}.architecture.context_length"
        )
    train_enc = _encode(train_data, max_length, cfg, model_config.teacher_dim, "train", config_key)
    test_enc = _encode(test_data, max_length, cfg, model_config.teacher_dim, "test", config_key)
    qat = qat if qat is not None and qat.enabled else None
    settings = _settings(model_config, cfg, qat, train_data)
    checkpoint_dir = Path(checkpoint_dir)

    torch.manual_seed(cfg.seed)
    model = ProtHash(model_config)
    if qat is not None:
        prepare_qat(model, qat, f"{config_key}.qat")
    model.to(device).train()
    optimizer = _optimizer(model, cfg)
    scheduler = _scheduler(optimizer, cfg)

    state = _load_checkpoint(checkpoint_dir, settings)
    if state is not None:
        progress = _restore(state, model, optimizer, scheduler)
        log.info("resuming from %s at step %d", checkpoint_dir, progress.step)
    else:
        untrained = evaluate(model, test_enc, cfg, device, autocast)
        if cfg.residual_init == "zero":
            zero_residual_branches(model)
        if cfg.adapter_init == "ridge":
            fit_adapter(model, train_enc, cfg, device)
        progress = _Progress(initial_cosine=evaluate(model, test_enc, cfg, device, autocast),
                             untrained_cosine=untrained)
    resumed_from = progress.step if state is not None else None
    del state

    writer = SummaryWriter(str(tensorboard_dir), purge_step=resumed_from)
    try:
        if resumed_from is None:
            _log_eval(writer, progress.initial_cosine, 0)
        _run_steps(model, optimizer, scheduler, train_enc, test_enc, cfg, settings, progress,
                   device, autocast, writer, checkpoint_dir, on_step)
        summary = _finish(model, qat, test_enc, cfg, progress, device, autocast, writer, out_dir)
    finally:
        writer.close()
    summary.update(resumed_from_step=resumed_from, device=str(device), n_train=len(train_data),
                   n_test=len(test_data), config_hash=_hash(settings), max_length=max_length)
    write_json(Path(out_dir) / "training_summary.json", summary)
    return summary


@torch.no_grad()
def zero_residual_branches(model: ProtHash) -> None:
    """Zero the last projection of every attention and feed-forward branch (ReZero/Fixup-style start).

    Every block is then an identity, so the step-0 student maps each residue to its token embedding
    and its mean-pooled vector is linear in amino-acid composition: with the ridge-fit adapter the
    student starts at the composition baseline and training adds what depends on context. The zeroed
    projections get gradients at once, the weights before them from the second step."""
    for block in model.blocks:
        block.attention.out_proj.weight.zero_()
        block.feed_forward.linear2.weight.zero_()


@torch.no_grad()
def fit_adapter(model: ProtHash, enc: _Encoded, cfg: TrainConfig, device: torch.device, ridge: float = 1e-3) -> None:
    """Set the adapter (native -> teacher width) to the ridge least-squares map from the step-0
    student's pooled native vectors to the teacher's pooled targets, over the training split.

    A linear-probe start: training then begins from the best linear read-out of the random encoder
    instead of a random projection, which shortens distillation (pooled objective only; no RNG used,
    so resuming and ``untrained_student`` are unaffected). An adapter without a bias
    (``adapter_bias: false``) is fitted without an intercept. Features and targets are gathered in
    blocks of ``ADAPTER_BLOCK_BYTES``: a split that fits in one block is solved from its matrices,
    a larger one from the running sums ``X^T X``, ``X^T Y``, ``sum X``, ``sum Y`` (float64)."""
    if cfg.objective != "pooled" or not isinstance(model.adapter, torch.nn.Linear):
        return
    was_training = model.training
    model.eval()
    has_bias = model.adapter.bias is not None
    blocks = _adapter_blocks(model, enc, cfg, device)
    x, y = next(blocks)  # (N, d), (N, T)
    second = next(blocks, None)
    if second is None:
        if has_bias:  # centred fit; the intercept goes to the bias
            x_mean, y_mean = x.mean(0), y.mean(0)
        else:  # no bias (ProtHash's adapter): no intercept, (X^T X + lambda I) W = X^T Y on raw features
            x_mean, y_mean = x.new_zeros(x.shape[1]), y.new_zeros(y.shape[1])
        xc, yc = x - x_mean, y - y_mean
        gram, cross = xc.T @ xc, xc.T @ yc  # (d, d), (d, T)
    else:
        n, x_sum, y_sum, gram, cross = 0, 0.0, 0.0, 0.0, 0.0
        for xb, yb in itertools.chain([(x, y), second], blocks):
            n, x_sum, y_sum = n + len(xb), x_sum + xb.sum(0), y_sum + yb.sum(0)
            gram, cross = gram + xb.T @ xb, cross + xb.T @ yb
        x_mean, y_mean = x_sum / n, y_sum / n
        if has_bias:  # centred moments
            gram, cross = gram - n * torch.outer(x_mean, x_mean), cross - n * torch.outer(x_mean, y_mean)
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    weight = torch.linalg.solve(gram, cross)  # (d, T)
    model.adapter.weight.copy_(weight.T.float())
    if has_bias:
        model.adapter.bias.copy_((y_mean - x_mean @ weight).float())
    model.train(was_training)


def _adapter_blocks(
    model: ProtHash, enc: _Encoded, cfg: TrainConfig, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(features (n, d), targets (n, T))`` float64 blocks of pooled step-0 vectors and their
    targets, each pooling of each batch in turn, about ``ADAPTER_BLOCK_BYTES`` each."""
    width = model.config.d_model + model.config.teacher_dim
    limit = max(1, ADAPTER_BLOCK_BYTES // (8 * width))
    features: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    held = 0
    for rows in length_batches(enc.lengths, cfg.batch_tokens, cfg.batch_size):
        batch = enc.batch(rows, device)
        hidden = model(batch.input_ids, batch.attention_mask).float()  # (B, L, d)
        for p in cfg.poolings:
            features.append(pool(hidden, batch.input_ids, batch.attention_mask, p).double().cpu())  # (B, d)
            targets.append(enc.pooled_targets(rows, p, torch.device("cpu")).double())  # (B, T)
            held += len(rows)
        if held >= limit:
            yield torch.cat(features), torch.cat(targets)
            features, targets, held = [], [], 0
    if features:
        yield torch.cat(features), torch.cat(targets)


def _run_steps(
    model: ProtHash, optimizer: torch.optim.Optimizer, scheduler: Any, train_enc: _Encoded, test_enc: _Encoded,
    cfg: TrainConfig, settings: dict, progress: _Progress, device: torch.device, autocast: bool,
    writer: Any, checkpoint_dir: Path, on_step: Callable[[int], None] | None,
) -> None:
    """Optimizer steps from ``progress.step`` to ``max_steps`` (updates ``progress`` in place)."""
    stream = _batch_stream(train_enc.lengths, cfg, progress.epoch, progress.batch_index)
    params = list(model.parameters())
    with tqdm(total=cfg.max_steps, initial=progress.step, desc="distil", unit="step", disable=None) as bar:
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
                _log_eval(writer, evaluate(model, test_enc, cfg, device, autocast), progress.step)
            progress.wall_seconds += time.perf_counter() - started
            if cfg.checkpoint_every and (progress.step % cfg.checkpoint_every == 0 or progress.step == cfg.max_steps):
                _save_checkpoint(checkpoint_dir, _checkpoint_state(model, optimizer, scheduler, settings, progress),
                                 cfg.keep_checkpoints)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", epoch=epoch)
            if on_step is not None:
                on_step(progress.step)


def _log_eval(writer: Any, cosine: dict[str, float], step: int) -> None:
    for name, value in cosine.items():
        writer.add_scalar(f"eval/cosine_{name}", value, step)
    log.info("step %d held-out cosine: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in cosine.items()))


def _finish(
    model: ProtHash, qat: QATSettings | None, test_enc: _Encoded, cfg: TrainConfig, progress: _Progress,
    device: torch.device, autocast: bool, writer: Any, out_dir: str | Path,
) -> dict:
    """Convert QAT layers back to float, evaluate, save the model; return the summary."""
    qat_info: dict[str, Any] = {"enabled": False}
    if qat is not None:
        qat_info = {**qat.to_dict(), "heldout_cosine_fake_quant": evaluate(model, test_enc, cfg, device, autocast)}
        convert_qat(model)
    final = evaluate(model, test_enc, cfg, device, autocast)
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


@torch.no_grad()
def evaluate(
    model: ProtHash, enc: _Encoded, cfg: TrainConfig, device: torch.device, autocast: bool
) -> dict[str, float]:
    """Mean cosine to the teacher per pooling over ``enc`` (eval mode); ``tokens`` = mean over
    sequences of the mean per-residue cosine, when per-residue targets are available."""
    was_training = model.training
    model.eval()
    with_tokens = cfg.objective == "tokens"
    sums = dict.fromkeys([*cfg.poolings, *(["tokens"] if with_tokens else [])], 0.0)
    for rows in length_batches(enc.lengths, cfg.batch_tokens, cfg.batch_size):
        batch = enc.batch(rows, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            hidden = _teacher_space(model, batch)
        hidden = hidden.float()  # (B, L, T)
        for p in cfg.poolings:
            pred = pool(hidden, batch.input_ids, batch.attention_mask, p)  # (B, T)
            sums[p] += F.cosine_similarity(pred, enc.pooled_targets(rows, p, device), dim=-1).sum().item()
        if with_tokens:
            for pred, i in zip(pool(hidden, batch.input_ids, batch.attention_mask, "tokens"), rows):
                target = enc.data.token_targets[i].to(device, torch.float32)  # (L_i, T)
                sums["tokens"] += F.cosine_similarity(pred, target, dim=-1).mean().item()
    model.train(was_training)
    return {name: total / len(enc.lengths) for name, total in sums.items()}

