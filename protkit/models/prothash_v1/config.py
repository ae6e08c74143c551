"""The ProtHash 1.0 student's settings (:class:`StagedConfig`) and the published sizes (``PRESETS``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from protkit.models.names import TEACHER_WIDTHS
from protkit.sequences.tokenize import VOCAB_SIZE

N_STAGES = 4  # ProtHash 1.0's encoder has four stages, each with its own adapter to the teacher's width


@dataclass(frozen=True)
class StagedConfig:
    d_model: int = 512
    heads: int = 8
    hidden_ratio: int = 4
    stage_layers: tuple[int, ...] = (3, 3, 3, 3)  # encoder blocks per stage (four stages)
    context_length: int = 2048
    teacher: str = "esmc_300m"
    teacher_dim: int = TEACHER_WIDTHS["esmc_300m"]
    vocab_size: int = VOCAB_SIZE
    mlm_head: bool = False  # the masked-language-model head (ProtHash's ``sequence_head``)

    def __post_init__(self) -> None:
        for name in ("d_model", "heads", "hidden_ratio", "context_length", "teacher_dim", "vocab_size"):
            _check_positive(name, getattr(self, name))
        layers = self.stage_layers
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__") or len(layers) != N_STAGES:
            raise ValueError(f"stage_layers must list {N_STAGES} layer counts (one per stage), got {layers!r}")
        for i, n in enumerate(layers):
            _check_positive(f"stage_layers[{i}]", n)
        object.__setattr__(self, "stage_layers", tuple(layers))  # a JSON list reads back as the tuple
        if not isinstance(self.teacher, str):
            raise ValueError(f"teacher must be a name (text), got {self.teacher!r}")
        if not isinstance(self.mlm_head, bool):
            raise ValueError(f"mlm_head must be true or false, got {self.mlm_head!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.hidden_ratio not in (1, 2, 4):
            raise ValueError(f"hidden_ratio must be 1, 2 or 4, got {self.hidden_ratio}")
        if self.head_dim % 2 or self.head_dim < 4:
            raise ValueError(f"rotary positions need an even head width of at least 4; d_model ({self.d_model}) / "
                             f"heads ({self.heads}) = {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def n_layers(self) -> int:
        return sum(self.stage_layers)

    @property
    def rotary_base(self) -> int:
        """ProtHash's context-aware base: ceil((context / (2 pi)) ** (d / (d - 2))), d the head width."""
        d = self.head_dim
        return math.ceil((self.context_length / (2 * math.pi)) ** (d / (d - 2)))

    @property
    def parameter_count(self) -> int:
        """Parameters of a model of these settings, counted without building it (the rotary tables are
        buffers, not parameters)."""
        d, hidden = self.d_model, self.hidden_ratio * self.d_model
        block = 2 * d + 2 * self.head_dim + 4 * d * d + 2 * d * hidden  # norms, q/k norms, attention, feed-forward
        adapters = 0 if self.teacher_dim == d else N_STAGES * (d + d * self.teacher_dim)
        head = d * d + d + d * self.vocab_size if self.mlm_head else 0
        return self.vocab_size * d + self.n_layers * block + adapters + head

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stage_layers"] = list(self.stage_layers)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "StagedConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown StagedConfig keys: {', '.join(unknown)}")
        return cls(**data)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")


PRESETS: dict[str, StagedConfig] = {
    # The published ProtHash 1.0 models (andrewdalpino/ESMC-ProtHash-V1-960 and -1152).
    "ProtHash-1.0-960": StagedConfig(
        d_model=512, heads=8, hidden_ratio=4, stage_layers=(3, 3, 3, 3), teacher="esmc_300m",
        teacher_dim=TEACHER_WIDTHS["esmc_300m"],
    ),
    "ProtHash-1.0-1152": StagedConfig(
        d_model=768, heads=12, hidden_ratio=4, stage_layers=(4, 4, 4, 4), teacher="esmc_600m",
        teacher_dim=TEACHER_WIDTHS["esmc_600m"],
    ),
    # Tests and examples: seconds on a CPU.
    "ProtHash-1.0-Tiny": StagedConfig(
        d_model=64, heads=4, hidden_ratio=2, stage_layers=(1, 1, 1, 1), context_length=512, teacher="unknown",
        teacher_dim=96, mlm_head=True,
    ),
}  # fmt: skip
