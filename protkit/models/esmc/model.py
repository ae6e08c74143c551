"""ESMC (EvolutionaryScale's ESM Cambrian) re-implemented for batched, padded inference.

Parameter names equal `esm.models.esmc.ESMC`'s, so its state dicts load with ``strict=True``.
Differences from esm's class: a key-padding mask (padding never changes a residue's output and
padded rows stay finite), no tokenizer object inside the model, and outputs named like
Hugging Face's (``last_hidden_state``, ``logits``, ``hidden_states``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from protkit.models.layers import Rotary, attention_with_weights, key_padding_mask, padding_mask
from protkit.models.memory import INFERENCE_BYTES_PER_PARAMETER, check_fits
from protkit.models.names import TEACHER_WIDTHS


@dataclass(frozen=True)
class ESMCConfig:
    d_model: int = TEACHER_WIDTHS["esmc_300m"]
    n_heads: int = 15
    n_layers: int = 30
    vocab_size: int = 64  # ESMC's embedding and logits width (33 tokens used)
    expansion_ratio: float = 8 / 3
    rotary_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "n_layers", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads or self.d_head % 2:
            raise ValueError(f"d_model ({self.d_model}) must be n_heads ({self.n_heads}) times an even head width")

    @property
    def parameter_count(self) -> int:
        """Parameters of a model of these settings, counted without building it."""
        d, h, v = self.d_model, self.ffn_hidden, self.vocab_size
        attention = 2 * d + 3 * d * d + d * d + 2 * d  # LayerNorm, qkv, out, q/k LayerNorms
        block = attention + 2 * d + 2 * d * h + h * d  # + feed-forward LayerNorm and SwiGLU
        head = d * d + d + 2 * d + d * v + v  # Linear, GELU, LayerNorm, Linear
        return v * d + self.n_layers * block + d + head

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU width: expansion ratio times d_model, rounded up to a multiple of 256."""
        return int(((self.expansion_ratio * self.d_model) + 255) // 256 * 256)

    @property
    def residue_scale(self) -> float:
        return math.sqrt(self.n_layers / 36)

    def to_dict(self) -> dict:
        return asdict(self)


CONTEXT_LENGTH = 2048  # tokens: ESMC's training context (rotary, so longer inputs run but were never seen)

ESMC_PRESETS: dict[str, ESMCConfig] = {
    "esmc_300m": ESMCConfig(d_model=TEACHER_WIDTHS["esmc_300m"], n_heads=15, n_layers=30),
    "esmc_600m": ESMCConfig(d_model=TEACHER_WIDTHS["esmc_600m"], n_heads=18, n_layers=36),
}


@dataclass
class ESMCOutput:
    last_hidden_state: torch.Tensor  # (B, L, D) after the final norm
    logits: torch.Tensor  # (B, L, 64)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # n_layers x (B, L, D), before the final norm
    attentions: tuple[torch.Tensor, ...] | None = None  # n_layers x (B, H, L, L) attention probabilities


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: ESMCConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.layernorm_qkv = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 3 * d, bias=False))
        self.out_proj = nn.Linear(d, d, bias=False)
        self.q_ln = nn.LayerNorm(d, bias=False)
        self.k_ln = nn.LayerNorm(d, bias=False)
        self.rotary = Rotary(cfg.d_head, cfg.rotary_base, seq_dim=1)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``weights``: when a list, attention runs by hand and appends its probabilities (B, H, L, L)."""
        B, L, D = x.shape
        q, k, v = self.layernorm_qkv(x).chunk(3, dim=-1)  # 3 x (B, L, D)
        q, k = self.q_ln(q).to(q.dtype), self.k_ln(k).to(q.dtype)
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)) for t in (q, k, v))  # (B, L, H, Dh)
        q, k = self.rotary(q, k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        if weights is None:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, L, Dh)
        else:
            context, probs = attention_with_weights(q, k, v, attn_mask)
            weights.append(probs)
        return self.out_proj(context.transpose(1, 2).reshape(B, L, D))


class SwiGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return F.silu(x1) * x2


class Block(nn.Module):
    """Pre-norm block; residual branches divided by sqrt(n_layers / 36) as in ESMC."""

    def __init__(self, cfg: ESMCConfig):
        super().__init__()
        d, h = cfg.d_model, cfg.ffn_hidden
        self.attn = MultiHeadAttention(cfg)
        self.ffn = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, 2 * h, bias=False), SwiGLU(), nn.Linear(h, d, bias=False)
        )
        self.scaling_factor = cfg.residue_scale

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(x, attn_mask, weights) / self.scaling_factor
        return x + self.ffn(x) / self.scaling_factor


class TransformerStack(nn.Module):
    def __init__(self, cfg: ESMCConfig):
        super().__init__()
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = nn.LayerNorm(cfg.d_model, bias=False)


class ESMC(nn.Module):
    """ESMC encoder: ``model(input_ids, attention_mask)`` -> :class:`ESMCOutput`."""

    def __init__(self, config: ESMCConfig):
        super().__init__()
        check_fits(config.parameter_count, INFERENCE_BYTES_PER_PARAMETER, "ESMC")  # before any allocation
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.transformer = TransformerStack(config)
        d = config.d_model
        self.sequence_head = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d), nn.Linear(d, config.vocab_size)
        )

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ESMCOutput:
        """input_ids (B, L) int64; attention_mask (B, L), True on real tokens (default: not PAD).
        ``output_attentions`` runs attention by hand (slower) to return its probabilities."""
        attention_mask = padding_mask(input_ids, attention_mask)
        attn_mask = key_padding_mask(attention_mask)  # (B, 1, 1, L) or None

        x = self.embed(input_ids)  # (B, L, D)
        hidden_states: list[torch.Tensor] = []
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        for block in self.transformer.blocks:
            x = block(x, attn_mask, attentions)
            if output_hidden_states:
                hidden_states.append(x)
        last_hidden_state = self.transformer.norm(x)  # (B, L, D)
        logits = self.sequence_head(last_hidden_state)  # (B, L, 64)
        return ESMCOutput(
            last_hidden_state=last_hidden_state,
            logits=logits,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
