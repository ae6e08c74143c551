"""Layers the teacher and the student share: rotary positions and padding masks."""

from __future__ import annotations

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
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.seq_dim = seq_dim

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
