"""ProtHash student (ProtHash 0.2.x architecture) with a key-padding mask.

token embedding -> N pre-norm blocks [RMSNorm -> grouped-query attention (rotary or learned
absolute positions) -> RMSNorm -> Linear-SiLU-Linear] -> adapter to the teacher's width.
Unlike ProtHash, padding is masked out of attention, so batches give the same vectors as
sequences embedded one at a time.
Reading and writing the ``prothash`` package's checkpoints: :mod:`protkit.models.prothash_format`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from protkit.atomic import atomic_path, write_json
from protkit.models.masking import key_padding_mask, padding_mask
from protkit.models.rotary import Rotary
from protkit.pooling import POOLINGS, pool
from protkit.tokenize import PAD_ID, VOCAB_SIZE

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
    teacher_dim: int = 960
    teacher: str = "esmc_300m"
    vocab_size: int = VOCAB_SIZE
    dropout: float = 0.0
    activation_checkpointing: bool = False
    adapter_bias: bool = False  # ProtHash's adapter has none; True makes the model non-exportable to prothash

    def __post_init__(self) -> None:
        if self.d_model % self.q_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by q_heads ({self.q_heads})")
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads ({self.q_heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.hidden_ratio not in (1, 2, 4):
            raise ValueError(f"hidden_ratio must be 1, 2 or 4, got {self.hidden_ratio}")
        if self.positions not in ("rotary", "absolute"):
            raise ValueError(f"positions must be 'rotary' or 'absolute', got {self.positions!r}")

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
    teacher, teacher_dim = ("esmc_300m", 960) if d == 384 else ("esmc_600m", 1152)
    return ProtHashConfig(
        d_model=d, n_layers=layers, positions=positions, teacher=teacher, teacher_dim=teacher_dim
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


class SelfAttention(nn.Module):
    """Grouped-query self-attention through SDPA, with a key-padding mask."""

    def __init__(self, cfg: ProtHashConfig):
        super().__init__()
        d, hd = cfg.d_model, cfg.head_dim
        self.q_heads, self.kv_heads, self.head_dim = cfg.q_heads, cfg.kv_heads, hd
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.rotary = Rotary(hd, cfg.rotary_base, seq_dim=2) if cfg.positions == "rotary" else None
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        q = self.q_proj(x).view(B, L, self.q_heads, self.head_dim).transpose(1, 2)  # (B, Hq, L, Dh)
        k = self.k_proj(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, L, Dh)
        v = self.v_proj(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, L, Dh)
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        z = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.q_heads != self.kv_heads,
        )  # (B, Hq, L, Dh)
        return self.out_proj(z.transpose(1, 2).reshape(B, L, D))


class FeedForward(nn.Module):
    def __init__(self, cfg: ProtHashConfig):
        super().__init__()
        hidden = cfg.hidden_ratio * cfg.d_model
        self.linear1 = nn.Linear(cfg.d_model, hidden, bias=False)
        self.linear2 = nn.Linear(hidden, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(F.silu(self.linear1(x))))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ProtHashConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model)
        self.attention = SelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), attn_mask)
        return x + self.feed_forward(self.norm2(x))


class ProtHash(nn.Module):
    """``model(input_ids, attention_mask)`` -> native hidden states ``(B, L, d_model)``."""

    def __init__(self, config: ProtHashConfig):
        super().__init__()
        self.config = config
        self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=PAD_ID)
        self.position_embeddings = (
            nn.Embedding(config.context_length, config.d_model) if config.positions == "absolute" else None
        )
        self.blocks = nn.ModuleList([EncoderBlock(config) for _ in range(config.n_layers)])
        self.adapter = (
            nn.Identity()
            if config.teacher_dim == config.d_model
            else nn.Linear(config.d_model, config.teacher_dim, bias=config.adapter_bias)
        )

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L = input_ids.shape
        if L > self.config.context_length:
            raise ValueError(f"sequence of {L} tokens exceeds the context length {self.config.context_length}")
        attention_mask = padding_mask(input_ids, attention_mask)
        attn_mask = key_padding_mask(attention_mask)  # (B, 1, 1, L) or None
        x = self.token_embeddings(input_ids)  # (B, L, D)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings.weight[:L]
        for block in self.blocks:
            if self.config.activation_checkpointing and self.training:
                x = checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask)
        return x  # (B, L, D)

    def embed_native(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str = "mean"
    ) -> torch.Tensor | list[torch.Tensor]:
        """Pooled (B, d_model) vectors, or per-residue (L_i, d_model) tensors for ``tokens``."""
        return self._embed(input_ids, attention_mask, pooling, to_teacher=False)

    def embed_teacher(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str = "mean"
    ) -> torch.Tensor | list[torch.Tensor]:
        """Like :meth:`embed_native`, in the teacher's width (through the adapter)."""
        return self._embed(input_ids, attention_mask, pooling, to_teacher=True)

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str, to_teacher: bool
    ) -> torch.Tensor | list[torch.Tensor]:
        attention_mask = padding_mask(input_ids, attention_mask)
        hidden = self(input_ids, attention_mask)  # (B, L, d_model)
        if to_teacher:
            hidden = self.adapter(hidden)  # (B, L, teacher_dim)
        return pool(hidden, input_ids, attention_mask, pooling)

    # --- save / load -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(directory / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        write_json(directory / "config.json", self.config.to_dict())

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device = "cpu") -> "ProtHash":
        """Load from a directory or a Hugging Face Hub repo id, in protkit's format
        (:meth:`save_pretrained`) or the ``prothash`` package's (0.1.x / 0.2.x); see
        :mod:`protkit.models.prothash_format`. Bad files raise ``ModelFormatError`` naming the file."""
        from protkit.models.prothash_format import load_pretrained_dir

        directory = Path(name_or_path)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(snapshot_download(str(name_or_path), allow_patterns=["config.json", "model.safetensors"]))
        return load_pretrained_dir(directory, device)


__all__ = ["ProtHash", "ProtHashConfig", "PRESETS", "POOLINGS"]
