"""A variant's settings: the student's :class:`~protkit.models.prothash.config.ProtHashConfig`, or
for ``architecture.family: v1`` the ProtHash 1.0 :class:`~protkit.models.prothash_v1.config.StagedConfig`
(``preset`` and ``architecture``, :func:`build_model_config`), and its :class:`TrainConfig` (the
``training`` section), checked with errors naming ``variants.<name>.<section>.<key>``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from protkit.distill.qat import QATSettings, check_group_size
from protkit.models.memory import TRAINING_BYTES_PER_PARAMETER, check_fits
from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.models.prothash_v1.config import N_STAGES, StagedConfig
from protkit.models.prothash_v1.config import PRESETS as V1_PRESETS
from protkit.sequences.pooling import TARGET_POOLINGS

OBJECTIVES = ("pooled", "tokens", "stages")  # stages: ProtHash 1.0's per-stage objective (family v1 only)
FAMILIES = ("v0.2", "v1")  # architecture.family: ProtHash 0.2's one-output student, 1.0's four-stage one
STAGE_TARGETS = ("cache", "teacher")  # where the stages objective reads its targets
# TrainConfig fields of the stages objective only; left out of the settings (and their hash) of the others.
STAGE_FIELDS = ("stage_weights", "logits_weight", "teacher_layers", "stage_targets")
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
    # objective "stages" (protkit.distill.stage_loss): loss weight per stage (magnitude terms 1/100 of it),
    # of the MLM logits, the teacher blocks the stages match (None: the cache's, or ProtHash 1.0's for the
    # released teachers) and where the targets come from ("cache"; "teacher": run beside the student).
    stage_weights: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    logits_weight: float = 0.1
    teacher_layers: tuple[int, ...] | None = None
    stage_targets: str = "cache"

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
        self._check_stage_fields()

    def _check_stage_fields(self) -> None:
        weights = tuple(self.stage_weights)
        if len(weights) != N_STAGES or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0
                                           for w in weights) or not any(weights):
            raise ValueError(f"stage_weights must be {N_STAGES} numbers >= 0, not all 0, got {list(weights)}")
        object.__setattr__(self, "stage_weights", tuple(float(w) for w in weights))
        if not self.logits_weight >= 0:
            raise ValueError(f"logits_weight must be >= 0, got {self.logits_weight!r}")
        if self.teacher_layers is not None:
            layers = tuple(self.teacher_layers)
            if len(layers) != N_STAGES or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in layers):
                raise ValueError(f"teacher_layers must be null or {N_STAGES} 0-based teacher blocks, got "
                                 f"{list(layers)}")
            object.__setattr__(self, "teacher_layers", layers)
        if self.stage_targets not in STAGE_TARGETS:
            raise ValueError(f"stage_targets must be one of {', '.join(STAGE_TARGETS)}, got {self.stage_targets!r}")

    def pooling_weight(self, pooling: str) -> float:
        """Loss weight of ``pooling`` (1 unless ``pooling_weights`` says otherwise)."""
        return (self.pooling_weights or {}).get(pooling, 1.0)

    def to_dict(self) -> dict:
        """The settings as JSON values; the stages objective's fields only when it is the objective."""
        data = {**asdict(self), "poolings": list(self.poolings), "betas": list(self.betas)}
        if self.objective != "stages":
            return {k: v for k, v in data.items() if k not in STAGE_FIELDS}
        layers = self.teacher_layers
        return {**data, "stage_weights": list(self.stage_weights), "teacher_layers": None if layers is None
                else list(layers)}

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
) -> ProtHashConfig | StagedConfig:
    """The student's settings from a variant's ``preset`` and/or ``architecture`` overrides, with
    ``teacher_dim`` (and ``teacher``) taken from the teacher cache. ``teacher_dim=None`` (not known
    yet, when a plan is checked) keeps the preset's and skips the checks against it.
    ``architecture.family: v1`` (or a ProtHash 1.0 preset) gives a :class:`StagedConfig`."""
    preset_name = variant_config.get("preset")
    overrides = dict(variant_config.get("architecture") or {})
    family = overrides.pop("family", "v1" if preset_name in V1_PRESETS else "v0.2")
    if family not in FAMILIES:
        raise ValueError(f"{key}.architecture.family: unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    presets, config_class = (V1_PRESETS, StagedConfig) if family == "v1" else (PRESETS, ProtHashConfig)
    if preset_name is not None:
        if preset_name not in presets:
            raise ValueError(f"{key}.preset: unknown {family} preset {preset_name!r}; choose from {', '.join(presets)}")
        base = presets[preset_name].to_dict()
        if teacher_dim is not None and "teacher_dim" not in overrides and base["teacher_dim"] != teacher_dim:
            raise ValueError(
                f"{key}.preset {preset_name} is built for teacher_dim {base['teacher_dim']} ({base['teacher']}) "
                f"but the teacher cache has d_model {teacher_dim}; choose a matching preset or set "
                f"{key}.architecture.teacher_dim"
            )
    else:
        base = config_class().to_dict()
    if teacher_dim is not None and overrides.get("teacher_dim", teacher_dim) != teacher_dim:
        raise ValueError(
            f"{key}.architecture.teacher_dim is {overrides['teacher_dim']} but the teacher cache has "
            f"d_model {teacher_dim}"
        )
    known = set(base)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{key}.architecture: unknown keys {', '.join(unknown)} for family {family} (known: "
                         f"family, {', '.join(sorted(known))})")
    merged = {**base, **overrides}
    if teacher_dim is not None:
        merged["teacher_dim"] = teacher_dim
    if teacher is not None:
        merged["teacher"] = teacher
    try:
        return config_class.from_dict(merged)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key}.architecture: {error}") from None


@dataclass(frozen=True)
class VariantSettings:
    """A variant's checked settings: the student's architecture, its training and QAT."""

    model: ProtHashConfig | StagedConfig
    training: TrainConfig
    qat: QATSettings

    @property
    def staged(self) -> bool:
        """Whether the student is a ProtHash 1.0 (four-stage) one."""
        return isinstance(self.model, StagedConfig)


@dataclass(frozen=True)
class CacheFacts:
    """What a variant's settings are checked against: the teacher cache it trains on (or will)."""

    teacher_dim: int | None  # None: not known before the cache is built
    teacher: str | None
    max_length: int  # tokens incl. CLS/EOS
    poolings: Sequence[str]
    tokens: bool  # per-residue targets cached
    stage_layers: tuple[int, ...] | None = ()  # blocks cached per residue (stage targets); None: not known yet
    logits: bool = False  # the teacher's MLM logits cached per residue


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
    if isinstance(model, StagedConfig):
        check_staged(model, train_config, qat, cache, key)
    elif train_config.objective == "stages":
        raise ValueError(f"{key}.training.objective 'stages' trains ProtHash 1.0 students only; set "
                         f"{key}.architecture.family: v1 or use objective 'pooled'")
    if qat.enabled:
        check_group_size(model, qat, f"{key}.qat")
    return VariantSettings(model, train_config, qat)


def is_staged_variant(variant_config: dict) -> bool:
    """Whether a variant's student is a ProtHash 1.0 (four-stage) one: ``architecture.family: v1`` or a
    ProtHash 1.0 preset."""
    family = (variant_config.get("architecture") or {}).get("family")
    return family == "v1" or (family is None and variant_config.get("preset") in V1_PRESETS)


def check_staged(model: StagedConfig, training: TrainConfig, qat: QATSettings, cache: CacheFacts, key: str) -> None:
    """A ProtHash 1.0 student's training against its objective and the teacher cache."""
    if training.objective != "stages":
        raise ValueError(f"{key}.training.objective must be 'stages' for a ProtHash 1.0 (family v1) student, got "
                         f"{training.objective!r}")
    if qat.enabled:
        raise ValueError(f"{key}.qat.enabled: quantization-aware training is for ProtHash 0.2 students only; "
                         "a v1 student is evaluated in fp32")
    if training.stage_targets != "cache" or cache.stage_layers is None:
        return
    wanted = training.teacher_layers or cache.stage_layers
    missing = [x for x in wanted if x not in cache.stage_layers]
    if not cache.stage_layers or missing:
        raise ValueError(
            f"{key}.training.stage_targets is 'cache' but the teacher cache holds no per-residue vectors of "
            f"teacher blocks {list(missing or wanted) or '(any)'}; set the teacher's stage_layers (and rebuild "
            f"its cache) or set {key}.training.stage_targets: teacher"
        )
    if len(wanted) != N_STAGES:
        raise ValueError(f"{key}.training.teacher_layers: the cache holds {len(wanted)} stage layers "
                         f"{list(wanted)}; name {N_STAGES} of them")
    if model.mlm_head and training.logits_weight > 0 and not cache.logits:
        raise ValueError(f"{key}.training.logits_weight is {training.logits_weight} but the teacher cache holds no "
                         f"logits; set the teacher's logits: true, or {key}.training.logits_weight: 0")
