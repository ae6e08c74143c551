"""Tokenization identical to ESMC's `EsmSequenceTokenizer`, with a vectorised fast path.

Every sequence becomes ``<cls> residues <eos>``; batches are right-padded with ``<pad>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

# ESMC's 33-token sequence vocabulary (esm.utils.constants.esm3.SEQUENCE_VOCAB).
VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z",
    "O", ".", "-", "|",
    "<mask>",
)  # fmt: skip
CLS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 32
VOCAB_SIZE = len(VOCAB)
SPECIAL_IDS = (CLS_ID, PAD_ID, EOS_ID)
FRAME_TOKENS = 2  # CLS before the residues, EOS after them

# Characters the fast path maps directly; anything else goes through esm's tokenizer.
_FAST_CHARS = "".join(t for t in VOCAB if len(t) == 1 and t != "|")
_FAST_OK = re.compile(f"[{re.escape(_FAST_CHARS)}]*")
_LUT = np.full(256, UNK_ID, dtype=np.int64)
for _i, _tok in enumerate(VOCAB):
    if len(_tok) == 1:
        _LUT[ord(_tok)] = _i


@dataclass(frozen=True)
class TokenBatch:
    """A right-padded batch: ``input_ids (B, L)`` int64 and ``attention_mask (B, L)`` bool."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device))

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per row including CLS and EOS.  # (B,)"""
        return self.attention_mask.sum(dim=1)


@lru_cache(maxsize=1)
def esm_tokenizer():  # -> esm.tokenization.EsmSequenceTokenizer
    """The reference tokenizer from the `esm` package (built once per process)."""
    from esm.tokenization import EsmSequenceTokenizer

    return EsmSequenceTokenizer()


def max_residues(max_length: int | None) -> int | None:
    """Residues that fit in ``max_length`` tokens once CLS and EOS are added."""
    if max_length is None:
        return None
    if max_length < FRAME_TOKENS + 1:
        raise ValueError(f"max_length must be >= 3 (CLS + 1 residue + EOS), got {max_length}")
    return max_length - FRAME_TOKENS


def token_count(residues: int) -> int:
    """Tokens of a sequence of ``residues`` residues: CLS and EOS added."""
    return residues + FRAME_TOKENS


def residue_count(tokens: int) -> int:
    """Residues in a tokenized sequence of ``tokens`` tokens (CLS and EOS taken off)."""
    return tokens - FRAME_TOKENS


def embedded_residues(residues: int, max_length: int) -> int:
    """Residues of a ``residues``-long sequence that ``max_length`` tokens keep."""
    return min(residues, max_residues(max_length))


def encode_one(sequence: str, max_length: int | None = None) -> list[int]:
    """Token ids of one sequence, ``[CLS, residues..., EOS]``, truncated to ``max_length``
    tokens by dropping residues at the C-terminal end (CLS and EOS are always kept)."""
    keep = max_residues(max_length)
    if _FAST_OK.fullmatch(sequence):  # one character per token: truncate the text
        residues = _LUT[np.frombuffer(sequence[:keep].encode("ascii"), dtype=np.uint8)]
        return [CLS_ID, *residues.tolist(), EOS_ID]
    # Special strings such as "<mask>" span several characters: truncate the ids, not the text.
    ids = esm_tokenizer().encode(sequence.replace("_", "<mask>"), add_special_tokens=True)
    if keep is not None and len(ids) > token_count(keep):
        ids = ids[: keep + 1] + [EOS_ID]
    return ids


def pad_batch(token_lists: Sequence[Sequence[int]]) -> TokenBatch:
    """Right-pad lists of ids into a TokenBatch."""
    if not token_lists:
        raise ValueError("cannot build a batch from zero sequences")
    width = max(len(t) for t in token_lists)
    input_ids = torch.full((len(token_lists), width), PAD_ID, dtype=torch.long)  # (B, L)
    for row, ids in enumerate(token_lists):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    lengths = torch.tensor([len(t) for t in token_lists])  # (B,)
    attention_mask = torch.arange(width)[None, :] < lengths[:, None]  # (B, L)
    return TokenBatch(input_ids, attention_mask)


def encode_batch(sequences: Sequence[str], max_length: int | None = None) -> TokenBatch:
    """Encode and right-pad a batch of sequences (see :func:`encode_one` for truncation)."""
    return pad_batch([encode_one(s, max_length) for s in sequences])


def residue_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """True on residue positions: inside the mask and not CLS, EOS or PAD.  # (B, L) bool"""
    special = (input_ids == CLS_ID) | (input_ids == EOS_ID) | (input_ids == PAD_ID)
    return attention_mask.bool() & ~special
