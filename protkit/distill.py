"""Distil a teacher's cached embeddings into a ProtHash student, with checkpoints and resume.

Objectives (``training.objective``):

- ``pooled``: for each configured pooling (``cls``/``mean``),
  ``cosine_weight * (1 - cos) + mse_weight * MSE`` between the student's pooled vectors in the
  teacher's width and the cached teacher vectors, averaged over the poolings (weighted by
  ``pooling_weights``: mean-pooled vectors sit much closer to their targets than CLS vectors, so
  with equal weights the CLS term dominates the gradient). The encoder runs
  once per batch and every pooling is taken from the same hidden states (the same vectors as
  ``ProtHash.embed_teacher``).
- ``tokens``: the same loss on every residue, against per-residue teacher targets.

Training: AdamW (no weight decay on 1-D parameters: norms, biases), linear warm-up then cosine
decay, gradient accumulation, gradient clipping, bf16 autocast on CUDA only. Each epoch draws a
new length-bucketed batching (random tie-breaks among equal lengths) and a new batch order from a
numpy generator seeded with ``(seed, epoch)``, so the data order is a pure function of
``(seed, epoch, batch index)`` and needs no generator state. Epochs repeat until ``max_steps``.

Checkpoints (``step-NNNNNNNN.pt`` in the checkpoint directory, the last ``keep_checkpoints``
kept) hold model, optimizer and scheduler state, the step, the torch CPU/CUDA RNG states (dropout)
and the data position (epoch, batch index). They are plain dicts of tensors and numbers written
atomically and read with ``torch.load(weights_only=True)``. A re-run resumes from the newest
checkpoint and ends at the same weights as an uninterrupted run (bit-identical on CPU). A
checkpoint written under other settings (model, training, QAT, or the training sequences and
pooled targets) is refused with an error that names the directory and the differing keys: delete
the directory to start over. ``eval_every``, ``checkpoint_every`` and ``keep_checkpoints`` do not
change the weights and may differ. The summary's held-out cosine after training is that of the
saved float model; with QAT, the fake-quantized model's is reported under ``qat``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from protkit.atomic import atomic_path, write_json
from protkit.batching import token_budget_batches
from protkit.device import resolve_device
from protkit.models.prothash import PRESETS, ProtHash, ProtHashConfig
from protkit.pooling import pool
from protkit.qat import QATSettings, convert_qat, prepare_qat
from protkit.tokenize import TokenBatch, encode_one, pad_batch

log = logging.getLogger(__name__)

OBJECTIVES = ("pooled", "tokens")
VECTOR_POOLINGS = ("cls", "mean")
CHECKPOINT_FORMAT = 1
# TrainConfig fields that never change the trained weights; they may differ on resume.
UNHASHED_FIELDS = ("eval_every", "checkpoint_every", "keep_checkpoints")


# --- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    objective: str = "pooled"
    poolings: tuple[str, ...] = ("cls", "mean")
    pooling_weights: dict[str, float] | None = None  # loss weight per pooling (default 1 each)
    cosine_weight: float = 1.0
    mse_weight: float = 1.0
    center_cosine: bool = False  # cosine on vectors minus the train-split target mean (see _vector_loss)
    adapter_init: str = "ridge"  # "ridge": least-squares fit of the adapter before step 0 (see fit_adapter)
    residual_init: str = "zero"  # "zero": blocks start as identities (see zero_residual_branches)
    lr: float = 5e-4
    min_lr_ratio: float = 0.0  # final lr as a fraction of lr
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    max_steps: int = 2000
    batch_tokens: int = 16384  # padded tokens per micro-batch
    batch_size: int | None = None  # optional cap on sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    clip_norm: float | None = 1.0  # None or 0: no clipping
    eval_every: int = 200
    checkpoint_every: int = 200  # 0: no checkpoints
    keep_checkpoints: int = 2
    seed: int = 0
    max_length: int | None = None  # tokens incl. CLS/EOS; None: the model's context length
    bf16: bool = True  # bf16 autocast, on CUDA only

    def __post_init__(self) -> None:
        object.__setattr__(self, "poolings", tuple(self.poolings))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.adapter_init not in ("ridge", "random"):
            raise ValueError(f"adapter_init must be 'ridge' or 'random', got {self.adapter_init!r}")
        if self.residual_init not in ("zero", "random"):
            raise ValueError(f"residual_init must be 'zero' or 'random', got {self.residual_init!r}")
        if not self.poolings or any(p not in VECTOR_POOLINGS for p in self.poolings):
            raise ValueError(
                f"poolings must be a non-empty list of {', '.join(VECTOR_POOLINGS)}, got {list(self.poolings)}"
            )
        weights = dict(self.pooling_weights or {})
        unknown = sorted(set(weights) - set(self.poolings))
        if unknown:
            raise ValueError(f"pooling_weights names {', '.join(unknown)}, not in poolings {list(self.poolings)}")
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in weights.values()):
            raise ValueError(f"pooling_weights must map poolings to numbers >= 0, got {weights}")
        object.__setattr__(self, "pooling_weights", {p: float(w) for p, w in sorted(weights.items())} or None)
        if not any(self.pooling_weight(p) > 0 for p in self.poolings):
            raise ValueError("pooling_weights are all 0: nothing to train")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        positive = ("lr", "max_steps", "batch_tokens", "grad_accum", "eval_every", "keep_checkpoints")
        non_negative = (
            "cosine_weight", "mse_weight", "min_lr_ratio", "weight_decay", "warmup_steps", "checkpoint_every",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.cosine_weight == 0 and self.mse_weight == 0:
            raise ValueError("cosine_weight and mse_weight are both 0: nothing to train")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be null or positive, got {self.batch_size!r}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"max_length must be null or >= 3 (CLS + 1 residue + EOS), got {self.max_length!r}")

    def pooling_weight(self, pooling: str) -> float:
        """Loss weight of ``pooling`` (1 unless ``pooling_weights`` says otherwise)."""
        return (self.pooling_weights or {}).get(pooling, 1.0)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {**data, "poolings": list(self.poolings), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, data: dict | None, key: str = "training") -> "TrainConfig":
        """Config from a mapping (YAML); errors name ``{key}.<field>``, unknown keys are refused."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{key}: unknown keys {', '.join(unknown)} (known: {', '.join(known)})")
        for name, value in data.items():
            data[name] = _coerce(value, known[name].type, f"{key}.{name}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{key}.{error}") from None


def _coerce(value: Any, annotation: str, key: str) -> Any:
    """Check a config value against its field annotation; numbers written as strings are read."""
    if value is None and annotation.endswith("| None"):
        return None
    base = annotation.removesuffix(" | None")
    if base == "float":
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{key} must be a number, got {value!r}")
    if base == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if base in ("bool", "str") and type(value).__name__ != base:
        raise ValueError(f"{key} must be {'true or false' if base == 'bool' else 'a string'}, got {value!r}")
    if base.startswith("dict") and not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping, got {value!r}")
    if base.startswith("tuple") and not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} must be a list, got {value!r}")
    return value


@dataclass
class DistillData:
    """Sequences with their teacher targets, row-aligned.

    ``targets``: pooling -> ``(N, D)`` float32; ``token_targets``: one ``(L_i, D)`` tensor per
    sequence (``L_i`` residues after truncation), needed by the ``tokens`` objective.
    """

    sequences: list[str]
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    token_targets: list[torch.Tensor] | None = None
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.sequences)
        for pooling, array in self.targets.items():
            if array.ndim != 2 or array.shape[0] != n:
                raise ValueError(f"{pooling} targets have shape {array.shape}, expected ({n}, D) for {n} sequences")
        if self.token_targets is not None and len(self.token_targets) != n:
            raise ValueError(f"{len(self.token_targets)} token targets for {n} sequences")
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"{len(self.ids)} ids for {n} sequences")

    def __len__(self) -> int:
        return len(self.sequences)

    def name(self, index: int) -> str:
        return self.ids[index] if self.ids is not None else f"#{index}"


# --- schedule and data order -----------------------------------------------------------------
def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based): linear warm-up over
    ``warmup_steps`` steps to 1, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_batches(lengths: list[int], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """Length-bucketed micro-batches for ``epoch``, in a shuffled order (a function of seed and epoch)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(len(lengths))  # random tie-breaks among equal lengths
    batches = token_budget_batches([lengths[p] for p in perm], cfg.batch_tokens, cfg.batch_size)
    batches = [[int(perm[i]) for i in batch] for batch in batches]
    return [batches[i] for i in rng.permutation(len(batches))]


def _batch_stream(lengths: list[int], cfg: TrainConfig, epoch: int, index: int) -> Iterator[tuple[int, int, list[int]]]:
    """Endless ``(epoch, batch index, rows)`` from a data position, epoch after epoch."""
    while True:
        batches = epoch_batches(lengths, cfg, epoch)
        for i in range(index, len(batches)):
            yield epoch, i, batches[i]
        epoch, index = epoch + 1, 0


# --- data preparation ------------------------------------------------------------------------
@dataclass
class _Encoded:
    data: DistillData
    tokens: list[list[int]]  # token ids incl. CLS/EOS per sequence
    lengths: list[int]
    centers: dict[str, torch.Tensor] = field(default_factory=dict)

    def batch(self, rows: list[int], device: torch.device) -> TokenBatch:
        return pad_batch([self.tokens[i] for i in rows]).to(device)

    def pooled_targets(self, rows: list[int], pooling: str, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.data.targets[pooling][rows], dtype=np.float32)).to(device)  # (B, D)

    def center(self, pooling: str, device: torch.device) -> torch.Tensor:
        """Mean target vector of this split for ``pooling`` (computed once).  # (D,)"""
        if pooling not in self.centers:
            mean = self.data.targets[pooling].mean(axis=0, dtype=np.float64).astype(np.float32)
            self.centers[pooling] = torch.from_numpy(mean).to(device)
        return self.centers[pooling]

    def token_targets(self, rows: list[int], device: torch.device) -> torch.Tensor:
        assert self.data.token_targets is not None
        return torch.cat([self.data.token_targets[i] for i in rows]).to(device, torch.float32)  # (R, D)

    def residues(self, rows: list[int]) -> int:
        return sum(self.lengths[i] - 2 for i in rows)


def _encode(
    data: DistillData, max_length: int, cfg: TrainConfig, teacher_dim: int, split: str, config_key: str
) -> _Encoded:
    """Tokenize once and check the targets against the tokens and the model's teacher width."""
    if len(data) == 0:
        raise ValueError(f"the {split} split has no sequences; distillation needs both train and test sequences")
    tokens = [encode_one(seq, max_length) for seq in data.sequences]
    for pooling in cfg.poolings:
        if pooling not in data.targets:
            raise ValueError(
                f"{split} targets lack pooling {pooling!r} (have: {', '.join(data.targets) or 'none'}); "
                f"set {config_key}.training.poolings to cached poolings"
            )
    for pooling, array in data.targets.items():
        if array.shape[1] != teacher_dim:
            raise ValueError(
                f"{split} {pooling} targets are {array.shape[1]}-wide but the student's teacher_dim is {teacher_dim}"
            )
    if cfg.objective == "tokens":
        if data.token_targets is None:
            raise ValueError(
                f"{config_key}.training.objective is 'tokens' but the {split} split has no per-residue targets "
                "(build the teacher cache with tokens enabled)"
            )
        for i, (ids, target) in enumerate(zip(tokens, data.token_targets)):
            if tuple(target.shape) != (len(ids) - 2, teacher_dim):
                raise ValueError(
                    f"sequence {data.name(i)}: per-residue targets have shape {tuple(target.shape)}, expected "
                    f"({len(ids) - 2}, {teacher_dim}) at max_length {max_length}; the cache was built with "
                    "another max_length or teacher"
                )
    return _Encoded(data, tokens, [len(t) for t in tokens])


# --- loss and evaluation ---------------------------------------------------------------------
def _teacher_space(model: ProtHash, batch: TokenBatch) -> torch.Tensor:
    """Student hidden states through the adapter.  # (B, L, teacher_dim)"""
    return model.adapter(model(batch.input_ids, batch.attention_mask))


def _vector_loss(
    pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, center: torch.Tensor | None = None
) -> torch.Tensor:
    """``cosine_weight * (1 - cos) + mse_weight * MSE``. With ``center`` (the train-split mean target,
    ``(D,)``) the cosine compares ``pred - center`` with ``target - center``: teacher vectors share a large
    common direction, and raw cosine mostly rewards matching it; centred cosine puts the gradient on
    what distinguishes one protein from another (raw cosine still rises, and MSE keeps the offset)."""
    # pred, target: (N, D) float32
    if center is not None:
        cosine = F.cosine_similarity(pred - center, target - center, dim=-1)  # (N,)
    else:
        cosine = F.cosine_similarity(pred, target, dim=-1)  # (N,)
    return cfg.cosine_weight * (1.0 - cosine).mean() + cfg.mse_weight * F.mse_loss(pred, target)


def distill_loss(
    model: ProtHash, enc: _Encoded, rows: list[int], cfg: TrainConfig, device: torch.device, autocast: bool
) -> torch.Tensor:
    """The configured objective on one micro-batch (a scalar)."""
    batch = enc.batch(rows, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        hidden = _teacher_space(model, batch)  # (B, L, T)
    hidden = hidden.float()
    if cfg.objective == "tokens":
        pred = torch.cat(pool(hidden, batch.input_ids, batch.attention_mask, "tokens"))  # (R, T)
        return _vector_loss(pred, enc.token_targets(rows, device), cfg)
    losses = [
        cfg.pooling_weight(p) * _vector_loss(
            pool(hidden, batch.input_ids, batch.attention_mask, p),
            enc.pooled_targets(rows, p, device),
            cfg,
            enc.center(p, device) if cfg.center_cosine else None,
        )
        for p in cfg.poolings
    ]
    return torch.stack(losses).sum() / sum(cfg.pooling_weight(p) for p in cfg.poolings)


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
    for rows in token_budget_batches(enc.lengths, cfg.batch_tokens, cfg.batch_size):
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


# --- checkpoints -----------------------------------------------------------------------------
def _settings(model_config: ProtHashConfig, cfg: TrainConfig, qat: QATSettings | None, train: DistillData) -> dict:
    """Everything that determines the trained weights (hashed into every checkpoint)."""
    digest = hashlib.sha256()
    for seq in train.sequences:
        digest.update(seq.encode() + b"\n")
    for pooling in sorted(train.targets):
        digest.update(pooling.encode() + np.ascontiguousarray(train.targets[pooling], dtype=np.float32).tobytes())
    training = {k: v for k, v in cfg.to_dict().items() if k not in UNHASHED_FIELDS}
    return {
        "model": model_config.to_dict(),
        "training": training,
        "qat": qat.to_dict() if qat is not None and qat.enabled else None,
        "train_data_sha256": digest.hexdigest(),
    }


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def checkpoint_files(checkpoint_dir: str | Path) -> list[Path]:
    """Checkpoint files, oldest step first."""
    return sorted(Path(checkpoint_dir).glob("step-*.pt"))


def _save_checkpoint(checkpoint_dir: Path, state: dict, keep: int) -> None:
    path = checkpoint_dir / f"step-{state['step']:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in checkpoint_files(checkpoint_dir)[:-keep]:
        old.unlink(missing_ok=True)


def _load_checkpoint(checkpoint_dir: Path, settings: dict) -> dict | None:
    """The newest checkpoint, or None; refuses one written under other settings."""
    files = checkpoint_files(checkpoint_dir)
    if not files:
        return None
    state = torch.load(files[-1], map_location="cpu", weights_only=True)
    if state.get("config_hash") != _hash(settings):
        theirs, ours = _flatten(json.loads(state.get("settings", "{}"))), _flatten(settings)
        differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ValueError(
            f"checkpoint directory {checkpoint_dir} holds {files[-1].name}, trained with other settings "
            f"(differing: {', '.join(differing) or 'unknown'}). Delete {checkpoint_dir} to start over, "
            "or restore the settings to resume."
        )
    return state


# --- training --------------------------------------------------------------------------------
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


@dataclass
class _Progress:
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
    (``adapter_bias: false``) is fitted without an intercept."""
    if cfg.objective != "pooled" or not isinstance(model.adapter, torch.nn.Linear):
        return
    was_training = model.training
    model.eval()
    features: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for rows in token_budget_batches(enc.lengths, cfg.batch_tokens, cfg.batch_size):
        batch = enc.batch(rows, device)
        hidden = model(batch.input_ids, batch.attention_mask).float()  # (B, L, d)
        for p in cfg.poolings:
            features.append(pool(hidden, batch.input_ids, batch.attention_mask, p).double().cpu())  # (B, d)
            targets.append(enc.pooled_targets(rows, p, torch.device("cpu")).double())  # (B, T)
    x, y = torch.cat(features), torch.cat(targets)  # (N, d), (N, T)
    has_bias = model.adapter.bias is not None
    if has_bias:  # centred fit; the intercept goes to the bias
        x_mean, y_mean = x.mean(0), y.mean(0)
    else:  # no bias (ProtHash's adapter): no intercept, (X^T X + lambda I) W = X^T Y on raw features
        x_mean, y_mean = x.new_zeros(x.shape[1]), y.new_zeros(y.shape[1])
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc  # (d, d)
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    weight = torch.linalg.solve(gram, xc.T @ yc)  # (d, T)
    model.adapter.weight.copy_(weight.T.float())
    if has_bias:
        model.adapter.bias.copy_((y_mean - x_mean @ weight).float())
    model.train(was_training)


def _restore(state: dict, model: ProtHash, optimizer: torch.optim.Optimizer, scheduler: Any) -> _Progress:
    """Load a checkpoint's states into the live objects and the RNGs; return its progress."""
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_torch"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return _Progress(**state["progress"])


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


def _checkpoint_state(
    model: ProtHash, optimizer: torch.optim.Optimizer, scheduler: Any, settings: dict, progress: _Progress
) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "config_hash": _hash(settings),
        "settings": json.dumps(settings, sort_keys=True),
        "step": progress.step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "progress": asdict(progress),
    }


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


# --- from files ------------------------------------------------------------------------------
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
) -> dict:
    """Train a variant (``preset``, ``architecture``, ``training``, ``qat`` keys) on a teacher
    cache and the dataset's ``sequences.parquet``; returns the training summary.

    Checkpoints exist to resume an interrupted run; with ``clear_checkpoints`` they are removed once
    the final model is written, so a deliberate re-run (``--forcerun distill``) trains afresh."""
    import pandas as pd

    from protkit.cache import load_pooled, load_token_targets

    key = f"variants.{variant_name}"
    cached = load_pooled(cache_dir)
    manifest = cached.manifest
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

    table = pd.read_parquet(sequences_parquet, columns=["id", "sequence"])
    by_id = dict(zip(table["id"], table["sequence"]))
    missing = [i for i in cached.ids if i not in by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} sequence ids of the teacher cache {cache_dir} are not in {sequences_parquet} "
            f"(e.g. {', '.join(missing[:3])}); rebuild the cache for this dataset"
        )
    splits = np.asarray(cached.splits)
    parts = {}
    for split in ("train", "test"):
        rows = np.flatnonzero(splits == split)
        ids = [cached.ids[i] for i in rows]
        token_targets = None
        if train_config.objective == "tokens":
            loaded = load_token_targets(cache_dir, ids)
            token_targets = [loaded[i] for i in ids]
        parts[split] = DistillData(
            sequences=[by_id[i] for i in ids],
            targets={p: cached.vectors[p][rows] for p in train_config.poolings if p in cached.vectors},
            token_targets=token_targets,
            ids=ids,
        )
    summary = train(model_config, train_config, qat, parts["train"], parts["test"], out_dir, checkpoint_dir,
                    tensorboard_dir, device, config_key=key)
    if clear_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary
