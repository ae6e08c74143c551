"""Layers the teacher and the student share: rotary positions, padding masks, and attention with
its probabilities (a manual path, for ``output_attentions``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from protkit.sequences.tokenize import PAD_ID


class Rotary(nn.Module):
    """Rotates queries and keys by position; angles are computed in fp32.

    ``seq_dim`` is the position axis of the inputs: 1 for ``(B, L, H, Dh)`` (ESMC's layout),
    2 for ``(B, H, L, Dh)`` (ProtHash's).
    """

    def __init__(self, dim: int, base: float, seq_dim: int):
        super().__init__()
        self.dim, self.base, self.seq_dim = dim, base, seq_dim
        self.register_buffer("inv_freq", self.frequencies(), persistent=False)

    def frequencies(self) -> torch.Tensor:
        """The rotation frequencies, on the CPU (a model built on the meta device re-fills its buffer
        from them).  # (Dh/2,)"""
        return 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device="cpu") / self.dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(q.shape[self.seq_dim], device=q.device, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq.float())  # (L, Dh/2)
        cos = freqs.cos().repeat(1, 2).to(q.dtype)  # (L, Dh)
        sin = freqs.sin().repeat(1, 2).to(q.dtype)
        if self.seq_dim == 1:
            cos, sin = cos[:, None, :], sin[:, None, :]  # (L, 1, Dh): broadcast over heads
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``attention_mask`` as bool, or ``input_ids != PAD`` when none is given.  # (B, L)"""
    return (input_ids != PAD_ID) if attention_mask is None else attention_mask.bool()


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """SDPA mask that hides padded keys, or None when nothing is padded (SDPA's fastest path).
    Padded query rows still see the real keys, so their outputs stay finite.  # (B, 1, 1, L)"""
    return None if bool(attention_mask.all()) else attention_mask[:, None, None, :]


def attention_with_weights(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention computed by hand, returning the context and the attention
    probabilities (each row sums to 1 over the keys ``attn_mask`` keeps). ``q (B, H, L, Dh)``;
    ``k``, ``v (B, Hkv, L, Dh)`` with ``H`` a multiple of ``Hkv`` (grouped-query heads: query head
    ``h`` reads key/value head ``h // (H / Hkv)``, as SDPA's ``enable_gqa`` does)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, L, Dh)
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])  # (B, H, L, L)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    probs = scores.softmax(dim=-1).to(q.dtype)  # (B, H, L, L)
    return probs @ v, probs  # (B, H, L, Dh), (B, H, L, L)
