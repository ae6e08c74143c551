"""ProtHash 1.0's teacher targets: four intermediate ESMC layers and the MLM logits, per residue.

A ProtHash 1.0 student has four stages; stage ``s`` is matched, residue by residue, to the teacher's
hidden state after block ``stage_layers[s]`` (0-based, before the final norm: esm's ``hiddens`` and
:class:`~protkit.models.esmc.model.ESMCOutput`'s ``hidden_states``), and its sequence head to the
teacher's logits cut to the 33 tokens of the vocabulary. :func:`stage_targets` computes them in one
teacher forward pass (the teacher running beside the student, and evaluation); a teacher cache may
store them too (``build_cache(..., stage_layers=..., stage_tokens=..., logits=...)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from protkit.models.esmc.model import ESMC
from protkit.sequences.tokenize import VOCAB_SIZE, TokenBatch

# The teacher blocks ProtHash 1.0's four stages are matched to (andrewdalpino/ESMC-ProtHash, distill.py).
DEFAULT_STAGE_LAYERS: dict[str, tuple[int, ...]] = {
    "esmc_300m": (7, 15, 22, 29),
    "esmc_600m": (8, 18, 27, 35),
}
STAGES = 4  # ProtHash 1.0's stages


@dataclass
class StageTargets:
    """One teacher forward pass: the chosen layers, the logits and the last (normed) hidden state."""

    layers: tuple[int, ...]  # 0-based teacher blocks, one per entry of ``hidden``
    hidden: list[torch.Tensor]  # len(layers) x (B, L, D), before the final norm
    logits: torch.Tensor  # (B, L, 33): MLM logits over the vocabulary's tokens
    last_hidden_state: torch.Tensor  # (B, L, D), after the final norm


def default_stage_layers(n_layers: int, stages: int = STAGES) -> tuple[int, ...]:
    """``stages`` teacher blocks spread evenly over ``n_layers``, the last one last (a random or
    custom teacher; repeated when the teacher has fewer blocks than stages).

    ``default_stage_layers(30) == (7, 14, 22, 29)``; ``default_stage_layers(4) == (0, 1, 2, 3)``.
    """
    if n_layers < 1 or stages < 1:
        raise ValueError(f"need at least one teacher block and one stage, got {n_layers} and {stages}")
    return tuple(math.ceil((s + 1) * n_layers / stages) - 1 for s in range(stages))


def stage_layers_for(teacher: str | None, n_layers: int, layers: Sequence[int] | None = None) -> tuple[int, ...]:
    """The stage layers of a teacher: ``layers`` if given, else ProtHash 1.0's for a released
    teacher (``esmc_300m``/``esmc_600m``), else :func:`default_stage_layers`; checked against
    ``n_layers`` (:func:`check_stage_layers`)."""
    if layers is None:
        layers = DEFAULT_STAGE_LAYERS.get(teacher or "") or default_stage_layers(n_layers)
    return check_stage_layers(layers, n_layers)


def planned_stage_layers(setting: str | Sequence[int] | None, weights: str,
                         n_layers: int | None) -> tuple[int, ...] | None:
    """The blocks a cache's ``stage_layers`` setting (``None``, ``"auto"`` or a list) stores, ascending:
    ``()`` for none; ``"auto"`` is :func:`stage_layers_for` the teacher's ``weights`` (a released
    teacher's name gets ProtHash 1.0's blocks). ``None`` when that needs ``n_layers`` and it is not known
    (a weights file, before it is read)."""
    if setting is None:
        return ()
    if setting != "auto":
        return tuple(sorted(set(setting)))
    if weights in DEFAULT_STAGE_LAYERS:
        return DEFAULT_STAGE_LAYERS[weights]
    return None if n_layers is None else tuple(sorted(set(stage_layers_for(weights, n_layers))))


def check_stage_layers(layers: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """``layers`` as a tuple; ValueError naming ``stage_layers`` unless each is a block of the teacher."""
    layers = tuple(layers)
    bad = [x for x in layers if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n_layers]
    if not layers or bad:
        raise ValueError(f"stage_layers {list(layers)}: each must be a 0-based teacher block, 0 .. {n_layers - 1} "
                         f"for a teacher of {n_layers} blocks (out of range: {bad}); ProtHash 1.0 uses "
                         f"{DEFAULT_STAGE_LAYERS} for the released teachers")
    return layers


def stage_targets(model: ESMC, batch: TokenBatch, layers: Sequence[int]) -> StageTargets:
    """The hidden states after teacher blocks ``layers`` and the logits of ``batch``, in one pass
    without gradients, in the teacher's dtype, on its device. Only the chosen layers are kept
    (forward hooks on the blocks, removed afterwards), not all ``n_layers`` hidden states.

    Padding never changes a real token's outputs (the teacher masks padded keys), so a row's
    targets on its real tokens are those of the sequence alone.
    """
    layers = check_stage_layers(layers, model.config.n_layers) if len(layers) else ()  # () = the logits only
    kept: dict[int, torch.Tensor] = {}

    def keeper(index: int):
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            kept[index] = output  # (B, L, D)
        return hook

    blocks = model.transformer.blocks
    handles = [blocks[i].register_forward_hook(keeper(i)) for i in sorted(set(layers))]
    try:
        with torch.no_grad():
            out = model(batch.input_ids.to(model.device), batch.attention_mask.to(model.device))
    finally:
        for handle in handles:
            handle.remove()
    return StageTargets(layers, [kept[i] for i in layers], out.logits[..., :VOCAB_SIZE], out.last_hidden_state)


def stage_cache_bytes(
    n_residues: int, n_sequences: int, width: int, n_layers: int, tokens: bool, logits: bool,
    store_bytes: int = 2,
) -> int:
    """Bytes a teacher cache adds for ``n_layers`` stage layers (docs/scaling.md): one pooled mean
    vector per layer and sequence (``store_bytes`` per number: 2 for fp16, 4 for fp32), and with
    ``tokens`` one float16 vector per layer and residue, with ``logits`` 33 float16 logits per
    residue. Safetensors' per-tensor header (~100 bytes per key) is counted; parquet's overhead is not."""
    header = 100  # bytes of safetensors header per stored tensor (name, dtype, shape, offsets)
    total = n_sequences * n_layers * width * store_bytes
    if tokens:
        total += n_layers * (n_residues * width * 2 + n_sequences * header)
    if logits:
        total += n_residues * VOCAB_SIZE * 2 + n_sequences * header
    return total
