"""Models that embed token batches, behind one interface used by ``protkit embed``.

An :class:`Embedder` wraps a ProtHash student (protkit's or the ``prothash`` package's format;
fp32/bf16/fp16 or int8; torch or onnxruntime) or the ESMC teacher, and turns a padded
:class:`~protkit.sequences.tokenize.TokenBatch` into pooled vectors (``cls``, ``mean``, ``max``, ``std``,
``var``, ``median``, ``norm``) and, optionally, per-residue vectors. Students embed in the teacher's width
(through the adapter); the poolings that commute with a linear head
(:data:`~protkit.sequences.pooling.LINEAR_POOLINGS`: ``cls``, ``mean``) are pooled before the adapter,
which is cheaper and equal up to rounding, while the others and per-residue vectors go through it
token by token.

Loading a model as an :class:`Embedder` is :mod:`protkit.embed.loading`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from protkit.io.progress import progress_bar
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.pooling import EMBED_POOLINGS, LINEAR_POOLINGS, TOKENS, pool
from protkit.sequences.tokenize import TokenBatch, pad_batch, residue_count

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Pooled = dict[str, np.ndarray]  # pooling -> (B, D) float32
Residues = list[np.ndarray]  # per sequence (L_i, D) float32, residues only


class EmbedError(ValueError):
    """A user-facing problem (option, model file, input, resume state); the message says what to do."""


class BatchRunner(Protocol):
    def __call__(self, batch: TokenBatch, poolings: Sequence[str], residues: bool) -> tuple[Pooled, Residues | None]:
        """Pooled vectors per pooling and, if ``residues``, per-residue vectors, in batch order."""


@dataclass
class Embedder:
    """A model ready to embed, with what identifies it in the output metadata."""

    source: str  # as given: directory, file, Hub id or preset name
    kind: str  # "student" or "teacher"
    fingerprint: str  # sha256 of the weights file
    dim: int  # output width (students: the teacher's width)
    context_length: int  # tokens incl. CLS/EOS
    config: dict  # the model's configuration
    runner: BatchRunner
    device: torch.device
    precision: str = "fp32"
    quantization: str | None = None  # None, "int8_dynamic", "int8_weight_only", or an ONNX scheme
    backend: str = "torch"
    model: nn.Module | None = None  # the torch module (None for onnxruntime)
    poolings: tuple[str, ...] = EMBED_POOLINGS  # the poolings it can give
    extra: dict = field(default_factory=dict)  # backend details for the metadata

    def metadata(self) -> dict:
        return {
            "model": self.source,
            "model_kind": self.kind,
            "model_fingerprint": self.fingerprint,
            "model_config": self.config,
            "int8": self.quantization is not None,
            "quantization": self.quantization,
            "precision": self.precision,
            "backend": self.backend,
            "dim": self.dim,
            **self.extra,
        }


# --- torch runners -------------------------------------------------------------------------------
class TorchRunner:
    """``encode(ids, mask) -> (B, L, d)`` hidden states, then an optional linear ``head`` to the
    output width; pooling in fp32."""

    def __init__(self, encode: Forward, head: nn.Module | None, dtype: torch.dtype):
        self.encode, self.head, self.dtype = encode, head, dtype

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return x
        return self.head(x.to(self.dtype)).float()

    def __call__(self, batch: TokenBatch, poolings: Sequence[str], residues: bool) -> tuple[Pooled, Residues | None]:
        ids, mask = batch.input_ids, batch.attention_mask
        with torch.inference_mode():
            hidden = self.encode(ids, mask).float()  # (B, L, d)
            token_wise = residues or any(p not in LINEAR_POOLINGS for p in poolings)
            per_token = self._head(hidden) if token_wise else None  # (B, L, D)
            pooled = {}
            for p in poolings:
                if p in LINEAR_POOLINGS:  # pooling before the linear head: cheaper, equal up to rounding
                    pooled[p] = self._head(pool(hidden, ids, mask, p))  # (B, D)
                else:  # max, std, var, median, norm: over the head's per-token output
                    pooled[p] = pool(per_token, ids, mask, p)  # (B, D)
            out = {p: v.cpu().numpy() for p, v in pooled.items()}
            tokens = [t.cpu().numpy() for t in pool(per_token, ids, mask, TOKENS)] if residues else None
        return out, tokens


def student_forward(model: nn.Module) -> Forward:
    """``(input_ids, attention_mask) -> hidden states in the teacher's width  # (B, L, teacher_dim)``."""
    return lambda input_ids, attention_mask: model.adapter(model(input_ids, attention_mask))


def teacher_forward(teacher: nn.Module) -> Forward:
    """``(input_ids, attention_mask) -> ESMC's last hidden state  # (B, L, d_model)``."""
    return lambda input_ids, attention_mask: teacher(input_ids, attention_mask).last_hidden_state


def student_runner(model: nn.Module, dtype: torch.dtype = torch.float32) -> TorchRunner:
    return TorchRunner(model, model.adapter, dtype)


def teacher_runner(teacher: nn.Module) -> TorchRunner:
    return TorchRunner(teacher_forward(teacher), None, torch.float32)


# --- the batching loop ---------------------------------------------------------------------------
def embed_token_lists(
    runner: BatchRunner,
    token_lists: Sequence[Sequence[int]],
    poolings: Sequence[str],
    dim: int,
    max_tokens: int,
    device: torch.device,
    residues: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], Residues | None]:
    """``{pooling: (N, dim) float32}`` (and per-residue arrays) in the order of ``token_lists``,
    computed in length-sorted token-budget batches; ``on_batch(residues)`` after each batch."""
    out = {p: np.empty((len(token_lists), dim), dtype=np.float32) for p in poolings}
    per_residue: Residues | None = [np.empty((0, dim), np.float32)] * len(token_lists) if residues else None
    for rows in token_budget_batches([len(t) for t in token_lists], max_tokens):
        batch = pad_batch([token_lists[i] for i in rows]).to(device)
        pooled, tokens = runner(batch, poolings, residues)
        for p in poolings:
            out[p][rows] = pooled[p]
        if per_residue is not None and tokens is not None:
            for i, t in zip(rows, tokens):
                per_residue[i] = t
        if on_batch is not None:
            on_batch(sum(residue_count(len(token_lists[i])) for i in rows))
    return out, per_residue


def residue_bar(total_residues: int, desc: str, initial: int = 0) -> tqdm:
    """A residues progress bar (log lines when stderr is not a terminal: :mod:`protkit.io.progress`)."""
    return progress_bar(total=total_residues, initial=initial, unit="res", unit_scale=True, desc=desc)


def pooled_embeddings(
    forward: Forward,
    token_lists: Sequence[Sequence[int]],
    poolings: Sequence[str],
    dim: int,
    max_tokens: int,
    device: torch.device,
    desc: str = "embedding",
) -> dict[str, np.ndarray]:
    """``{pooling: (N, dim) float32}`` of ``forward``'s per-token output (evaluation, benchmarks)."""
    runner = TorchRunner(forward, None, torch.float32)
    with residue_bar(sum(residue_count(len(t)) for t in token_lists), desc) as bar:
        return embed_token_lists(runner, token_lists, poolings, dim, max_tokens, device, on_batch=bar.update)[0]
