"""Padding masks shared by the teacher and the student."""

from __future__ import annotations

import torch

from protkit.tokenize import PAD_ID


def padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``attention_mask`` as bool, or ``input_ids != PAD`` when none is given.  # (B, L)"""
    return (input_ids != PAD_ID) if attention_mask is None else attention_mask.bool()


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """SDPA mask that hides padded keys, or None when nothing is padded (SDPA's fastest path).
    Padded query rows still see the real keys, so their outputs stay finite.  # (B, 1, 1, L)"""
    return None if bool(attention_mask.all()) else attention_mask[:, None, None, :]
