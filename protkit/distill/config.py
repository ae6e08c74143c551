"""A variant's settings: the student's :class:`~protkit.models.prothash.config.ProtHashConfig`
(``preset`` and ``architecture``, :func:`build_model_config`) and its :class:`TrainConfig` (the
``training`` section), checked with errors naming ``variants.<name>.<section>.<key>``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from protkit.distill.qat import QATSettings, check_group_size
from protkit.models.memory import TRAINING_BYTES_PER_PARAMETER, check_fits
from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.sequences.pooling import TARGET_POOLINGS

OBJECTIVES = ("pooled", "tokens")
# TrainConfig fields that never change the trained weights; they may differ on resume.
UNHASHED_FIELDS = ("eval_every", "checkpoint_every", "keep_checkpoints")


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "pooled"
    poolings: tuple[str, ...] = TARGET_POOLINGS
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
        if not self.poolings or any(p not in TARGET_POOLINGS for p in self.poolings):
            raise ValueError(
                f"poolings must be a non-empty list of {', '.join(TARGET_POOLINGS)}, got {list(self.poolings)}"
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


def build_model_config(
    variant_config: dict, teacher_dim: int | None, teacher: str | None = None, key: str = "variants.<name>"
) -> ProtHashConfig:
    """ProtHashConfig from a variant's ``preset`` and/or ``architecture`` overrides, with
    ``teacher_dim`` (and ``teacher``) taken from the teacher cache. ``teacher_dim=None`` (not known
    yet, when a plan is checked) keeps the preset's and skips the checks against it."""
    preset_name = variant_config.get("preset")
    overrides = dict(variant_config.get("architecture") or {})
    if preset_name is not None:
        if preset_name not in PRESETS:
            raise ValueError(f"{key}.preset: unknown preset {preset_name!r}; choose from {', '.join(PRESETS)}")
        base = PRESETS[preset_name].to_dict()
        if teacher_dim is not None and "teacher_dim" not in overrides and base["teacher_dim"] != teacher_dim:
            raise ValueError(
                f"{key}.preset {preset_name} is built for teacher_dim {base['teacher_dim']} ({base['teacher']}) "
                f"but the teacher cache has d_model {teacher_dim}; choose a matching preset or set "
                f"{key}.architecture.teacher_dim"
            )
    else:
        base = ProtHashConfig().to_dict()
    if teacher_dim is not None and overrides.get("teacher_dim", teacher_dim) != teacher_dim:
        raise ValueError(
            f"{key}.architecture.teacher_dim is {overrides['teacher_dim']} but the teacher cache has "
            f"d_model {teacher_dim}"
        )
    known = set(base)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{key}.architecture: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    merged = {**base, **overrides}
    if teacher_dim is not None:
        merged["teacher_dim"] = teacher_dim
    if teacher is not None:
        merged["teacher"] = teacher
    try:
        return ProtHashConfig.from_dict(merged)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}.architecture: {error}") from None


@dataclass(frozen=True)
class VariantSettings:
    """A variant's checked settings: the student's architecture, its training and QAT."""

    model: ProtHashConfig
    training: TrainConfig
    qat: QATSettings


@dataclass(frozen=True)
class CacheFacts:
    """What a variant's settings are checked against: the teacher cache it trains on (or will)."""

    teacher_dim: int | None  # None: not known before the cache is built
    teacher: str | None
    max_length: int  # tokens incl. CLS/EOS
    poolings: Sequence[str]
    tokens: bool  # per-residue targets cached


def variant_settings(variant_config: dict, cache: CacheFacts, key: str = "variants.<name>") -> VariantSettings:
    """Every setting of a variant (``preset``, ``architecture``, ``training``, ``qat``), checked
    alone and against each other and the teacher cache; ValueError naming ``{key}.<section>.<key>``.
    Run when a plan is made (:mod:`protkit.config`) and again when the distill job starts."""
    model = build_model_config(variant_config, cache.teacher_dim, cache.teacher, key)
    check_fits(model.parameter_count, TRAINING_BYTES_PER_PARAMETER, f"{key}.architecture")
    training = dict(variant_config.get("training") or {})
    if training.get("max_length", cache.max_length) != cache.max_length:
        raise ValueError(
            f"{key}.training.max_length is {training['max_length']} but the teacher cache is built with "
            f"max_length {cache.max_length} (data.max_length + CLS + EOS); the student must see the sequences "
            "the teacher saw"
        )
    train_config = TrainConfig.from_dict({**training, "max_length": cache.max_length}, f"{key}.training")
    if cache.max_length > model.context_length:
        raise ValueError(
            f"{key}.architecture.context_length ({model.context_length}) is shorter than the teacher cache's "
            f"max_length ({cache.max_length} tokens); raise it or lower data.max_length"
        )
    missing = [p for p in train_config.poolings if p not in cache.poolings]
    if train_config.objective == "pooled" and missing:
        raise ValueError(f"{key}.training.poolings: {', '.join(missing)} not cached by the teacher (it caches "
                         f"{', '.join(cache.poolings)}); add it to the teacher's poolings or leave it out here")
    if train_config.objective == "tokens" and not cache.tokens:
        raise ValueError(
            f"{key}.training.objective is 'tokens' but the teacher cache holds no per-residue embeddings; "
            "rebuild it with tokens enabled or use objective 'pooled'"
        )
    qat = QATSettings.from_dict(variant_config.get("qat"), f"{key}.qat")
    if qat.enabled:
        check_group_size(model, qat, f"{key}.qat")
    return VariantSettings(model, train_config, qat)
