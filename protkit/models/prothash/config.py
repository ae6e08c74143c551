"""The ProtHash student's settings (:class:`ProtHashConfig`) and the published sizes (``PRESETS``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from protkit.models.names import TEACHER_WIDTHS
from protkit.sequences.tokenize import VOCAB_SIZE

Positions = Literal["rotary", "absolute"]


@dataclass(frozen=True)
class ProtHashConfig:
    d_model: int = 384
    q_heads: int = 16
    kv_heads: int = 4
    n_layers: int = 4
    hidden_ratio: int = 2
    context_length: int = 2048
    positions: Positions = "rotary"
    teacher_dim: int = TEACHER_WIDTHS["esmc_300m"]
    teacher: str = "esmc_300m"
    vocab_size: int = VOCAB_SIZE
    dropout: float = 0.0
    activation_checkpointing: bool = False
    adapter_bias: bool = False  # ProtHash's adapter has none; True makes the model non-exportable to prothash

    def __post_init__(self) -> None:
        for name in ("d_model", "q_heads", "kv_heads", "n_layers", "hidden_ratio", "context_length", "teacher_dim",
                     "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.d_model % self.q_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by q_heads ({self.q_heads})")
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads ({self.q_heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.hidden_ratio not in (1, 2, 4):
            raise ValueError(f"hidden_ratio must be 1, 2 or 4, got {self.hidden_ratio}")
        if self.positions not in ("rotary", "absolute"):
            raise ValueError(f"positions must be 'rotary' or 'absolute', got {self.positions!r}")
        if self.positions == "rotary" and (self.head_dim % 2 or self.head_dim < 4):
            raise ValueError(f"rotary positions need an even head width of at least 4; d_model ({self.d_model}) / "
                             f"q_heads ({self.q_heads}) = {self.head_dim}")

    @property
    def parameter_count(self) -> int:
        """Parameters of a model of these settings, counted without building it."""
        d, kv_width, hidden = self.d_model, self.kv_heads * self.head_dim, self.hidden_ratio * self.d_model
        block = 2 * d + 2 * d * d + 2 * d * kv_width + 2 * d * hidden  # norms, q/out, k/v, feed-forward
        adapter = 0 if self.teacher_dim == d else d * self.teacher_dim + (self.teacher_dim if self.adapter_bias else 0)
        positions = self.context_length * d if self.positions == "absolute" else 0
        return self.vocab_size * d + positions + self.n_layers * block + adapter

    @property
    def head_dim(self) -> int:
        return self.d_model // self.q_heads

    @property
    def rotary_base(self) -> int:
        """ProtHash's context-aware base: ceil((context / (2 pi)) ** (d / (d - 2)))."""
        d = self.head_dim
        return math.ceil((self.context_length / (2 * math.pi)) ** (d / (d - 2)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ProtHashConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ProtHashConfig keys: {', '.join(unknown)}")
        # config.json files written before adapter_bias existed lack the key; their adapters had a bias.
        return cls(**{"adapter_bias": True, **data})


def _preset(d: int, layers: int, positions: Positions) -> ProtHashConfig:
    teacher = "esmc_300m" if d == 384 else "esmc_600m"
    return ProtHashConfig(
        d_model=d, n_layers=layers, positions=positions, teacher=teacher, teacher_dim=TEACHER_WIDTHS[teacher]
    )


PRESETS: dict[str, ProtHashConfig] = {
    "ProtHash-V2-384-Tiny": _preset(384, 4, "rotary"),
    "ProtHash-V2-384": _preset(384, 10, "rotary"),
    "ProtHash-V2-512-Tiny": _preset(512, 4, "rotary"),
    "ProtHash-V2-512": _preset(512, 10, "rotary"),
    "ProtHash-384-Tiny": _preset(384, 4, "absolute"),
    "ProtHash-384": _preset(384, 10, "absolute"),
    "ProtHash-512-Tiny": _preset(512, 4, "absolute"),
    "ProtHash-512": _preset(512, 10, "absolute"),
}
