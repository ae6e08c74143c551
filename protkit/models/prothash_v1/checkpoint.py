"""Checkpoint formats of the ProtHash 1.0 student: protkit's own and the ``prothash`` 1.0.x package's.

A checkpoint directory holds ``config.json`` and ``model.safetensors``; the config's keys say which
format it is in:

* **protkit-v1** (:meth:`StagedProtHash.save_pretrained`): :class:`StagedConfig`'s keys plus
  ``"family": "v1"``; tensors ``blocks.S.I.attention.q_proj.weight``, ``adapters.S.linear.weight``,
  ``mlm_head.linear1.weight``, ... (``S`` from 0).
* **prothash-1.0** (the PyPI package's ``ESMCProtHash``, saved by huggingface_hub's
  ``PyTorchModelHubMixin``): :data:`PACKAGE_KEYS`; tensors ``encoder.stageS.I.stage1.q_proj.weight``,
  ``adapterS.linear.weight``, ``sequence_head.*`` (when the package's head was added; ``S`` from 1)
  and each layer's rotary tables ``encoder.stageS.I.stage1.position_embeddings.cosine_cache`` /
  ``sine_cache``, which protkit recomputes and refuses when they differ.

Settings and tensors only: the model (:mod:`.model`) imports this module, never the reverse. Every
problem with a file raises :class:`~protkit.models.prothash.checkpoint.ModelFormatError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from protkit.models.layers import Rotary
from protkit.models.names import CONFIG_FILE, WEIGHTS_FILE, teacher_of_width
from protkit.models.prothash.checkpoint import (
    ModelFormatError, check_package_sizes, check_state, read_config, read_weights, write_checkpoint,
)
from protkit.models.prothash_v1.config import N_STAGES, StagedConfig
from protkit.sequences.tokenize import PAD_ID, VOCAB_SIZE

V1Format = Literal["protkit-v1", "prothash-1.0"]

FAMILY_KEY, FAMILY = "family", "v1"  # the marker in protkit's config.json of a ProtHash 1.0 student
PROTKIT_KEYS = frozenset(f.name for f in fields(StagedConfig)) | {FAMILY_KEY}
STAGE_KEYS = tuple(f"num_stage{s}_layers" for s in range(1, N_STAGES + 1))
PACKAGE_KEYS = frozenset({
    "vocabulary_size", "padding_index", "context_length", "teacher_dimensions", "embedding_dimensions",
    "num_attention_heads", "hidden_ratio", *STAGE_KEYS,
})  # fmt: skip
ONLY_PACKAGE_1 = frozenset({"num_attention_heads", *STAGE_KEYS})  # keys no other prothash release has
CACHES = ("cosine_cache", "sine_cache")
CACHE = "encoder.stage{}.{}.stage1.position_embeddings.{}"  # stage (from 1), layer, cache
CACHE_TOLERANCE = 1e-5  # absolute, on values in [-1, 1]: another torch's cos may differ in the last bits

# protkit's name (after "blocks.S.I.") -> the package's (after "encoder.stageS.I.").
_BLOCK_NAMES = {
    "norm1.weight": "norm1.weight", "norm2.weight": "norm2.weight",
    **{f"attention.{p}.weight": f"stage1.{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "out_proj")},
    "attention.q_norm.weight": "stage1.q_norm.weight", "attention.k_norm.weight": "stage1.k_norm.weight",
    "feed_forward.linear1.weight": "stage2.linear1.weight", "feed_forward.linear2.weight": "stage2.linear2.weight",
}  # fmt: skip


# --- which format ---------------------------------------------------------------------------------
def config_v1_format(config: dict) -> V1Format | None:
    """``protkit-v1``, ``prothash-1.0`` or None (not a ProtHash 1.0 config), from a config's keys."""
    if config.get(FAMILY_KEY) == FAMILY:
        return "protkit-v1"
    if set(config) & ONLY_PACKAGE_1:
        return "prothash-1.0"
    return None


def detect_v1_format(directory: str | Path) -> V1Format | None:
    """The ProtHash 1.0 format of the checkpoint in ``directory``, or None when its ``config.json``
    describes another model (ModelFormatError when the file is unreadable)."""
    return config_v1_format(read_config(Path(directory) / CONFIG_FILE))


# --- names ----------------------------------------------------------------------------------------
def package_name(name: str) -> str:
    """The prothash 1.0 package's name for protkit's tensor ``name`` (KeyError when it has none)."""
    parts = name.split(".")
    if parts[0] == "blocks":
        return f"encoder.stage{int(parts[1]) + 1}.{parts[2]}." + _BLOCK_NAMES[".".join(parts[3:])]
    if parts[0] == "adapters":
        return f"adapter{int(parts[1]) + 1}." + ".".join(parts[2:])
    if parts[0] == "mlm_head":
        return "sequence_head." + ".".join(parts[1:])
    if name == "token_embeddings.weight":
        return name
    raise KeyError(name)


def cache_names(config: StagedConfig) -> list[str]:
    """The package's rotary table names of a model of ``config``, one cosine and one sine per layer."""
    return [CACHE.format(s + 1, i, c) for s, n in enumerate(config.stage_layers) for i in range(n) for c in CACHES]


def rotary_tables(config: StagedConfig) -> dict[str, torch.Tensor]:
    """The package's ``cosine_cache`` and ``sine_cache`` for ``config``: the angles of every position
    of the context, computed as :class:`~protkit.models.layers.Rotary` computes them.  # (1, 1, ctx, Dh)"""
    inv_freq = Rotary(config.head_dim, config.rotary_base, seq_dim=2).inv_freq  # (Dh/2,)
    angles = torch.outer(torch.arange(config.context_length, dtype=torch.float32), inv_freq)  # (ctx, Dh/2)
    angles = torch.cat((angles, angles), dim=-1)[None, None]  # (1, 1, ctx, Dh)
    return {"cosine_cache": angles.cos(), "sine_cache": angles.sin()}


# --- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagedCheckpoint:
    """A checkpoint directory as read: its format, settings and tensors as named in the file."""

    directory: Path
    format: V1Format
    config: StagedConfig
    tensors: dict[str, torch.Tensor]

    def file_name(self, name: str) -> str:
        """The file's name for protkit's tensor ``name``."""
        return package_name(name) if self.format == "prothash-1.0" else name

    def state_dict(self, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
        """protkit's state dict of the model whose tensor shapes are ``shapes`` (protkit names);
        ModelFormatError naming the file when the file's names or shapes differ."""
        in_file = {self.file_name(n): s for n, s in shapes.items()}
        optional = frozenset(cache_names(self.config)) if self.format == "prothash-1.0" else frozenset()
        check_state(self.tensors, in_file, self.directory / WEIGHTS_FILE, self.directory / CONFIG_FILE, optional)
        return {n: self.tensors[self.file_name(n)] for n in shapes}


def read_staged_checkpoint(directory: str | Path) -> StagedCheckpoint:
    """The ProtHash 1.0 checkpoint in ``directory`` (protkit-v1 or prothash-1.0 format)."""
    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    raw = read_config(config_path)
    fmt = config_v1_format(raw)
    if fmt is None:
        raise ModelFormatError(
            f"{config_path}: not a ProtHash 1.0 model: expected the prothash 1.0 package's keys "
            f"({', '.join(sorted(PACKAGE_KEYS))}) or protkit's with \"{FAMILY_KEY}\": \"{FAMILY}\"; found "
            f"{', '.join(sorted(raw)) or '(none)'}"
        )
    tensors = read_weights(weights)
    if fmt == "protkit-v1":
        try:
            config = StagedConfig.from_dict({k: v for k, v in raw.items() if k != FAMILY_KEY})
        except (TypeError, ValueError) as err:
            raise ModelFormatError(f"{config_path}: {err}") from None
    else:
        config = package_config(raw, tensors, config_path)
        check_rotary_tables(tensors, config, weights)
    return StagedCheckpoint(directory, fmt, config, tensors)


def package_config(config: dict, tensors: dict[str, torch.Tensor], config_path: Path) -> StagedConfig:
    """The :class:`StagedConfig` of a prothash 1.0.x ``config.json`` whose tensors are ``tensors``
    (the MLM head is there when the file holds ``sequence_head.*``)."""
    keys = set(config)
    if keys != PACKAGE_KEYS:
        missing, extra = sorted(PACKAGE_KEYS - keys), sorted(keys - PACKAGE_KEYS)
        raise ModelFormatError(
            f"{config_path}: looks like a prothash 1.0 config but its keys differ (missing: "
            f"{', '.join(missing) or '-'}; unexpected: {', '.join(extra) or '-'}); protkit reads prothash 1.0.x's "
            f"{', '.join(sorted(PACKAGE_KEYS))}"
        )
    check_package_sizes(config, PACKAGE_KEYS, config_path)
    try:
        return StagedConfig(
            d_model=config["embedding_dimensions"], heads=config["num_attention_heads"],
            hidden_ratio=config["hidden_ratio"], stage_layers=tuple(config[k] for k in STAGE_KEYS),
            context_length=config["context_length"], teacher=teacher_of_width(config["teacher_dimensions"]),
            teacher_dim=config["teacher_dimensions"], vocab_size=config["vocabulary_size"],
            mlm_head=any(name.startswith("sequence_head.") for name in tensors),
        )  # fmt: skip
    except ValueError as err:
        raise ModelFormatError(f"{config_path}: {err}") from None


def check_rotary_tables(tensors: dict[str, torch.Tensor], config: StagedConfig, weights: Path) -> None:
    """Refuse saved rotary tables that differ from the ones protkit computes for ``config`` (an absent
    table is fine: the package computes it from the same formula, as protkit does)."""
    ours = rotary_tables(config)
    for name in cache_names(config):
        saved = tensors.get(name)
        if saved is None:
            continue
        want = ours[name.rsplit(".", 1)[1]]
        if saved.shape != want.shape:
            raise ModelFormatError(
                f"{weights}: {name} has shape {tuple(saved.shape)}, expected {tuple(want.shape)} for context_length "
                f"{config.context_length} and head width {config.head_dim}"
            )
        eps = torch.finfo(saved.dtype).eps if saved.is_floating_point() else 0.0  # a bf16/fp16 file rounds them
        if not torch.allclose(saved.float(), want, rtol=0.0, atol=max(CACHE_TOLERANCE, eps)):
            raise ModelFormatError(
                f"{weights}: {name} differs from the rotary table of prothash 1.0 for context_length "
                f"{config.context_length} and head width {config.head_dim} (base {config.rotary_base}); "
                f"protkit cannot reproduce this model's positions"
            )


# --- writing --------------------------------------------------------------------------------------
def write_staged_checkpoint(directory: str | Path, config: StagedConfig, state: dict[str, torch.Tensor]) -> Path:
    """protkit-v1 format: ``state`` (protkit names) and ``config`` with the family marker, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return write_checkpoint(directory, {**config.to_dict(), FAMILY_KEY: FAMILY}, state)


def to_package(config: StagedConfig, state: dict[str, torch.Tensor],
               where: str = "model") -> tuple[dict, dict[str, torch.Tensor]]:
    """Settings and state dict (protkit names) -> the prothash 1.0 package's ``config.json`` dict and
    state dict, rotary tables included (its loader is not strict and would keep a missing tensor's
    initial value). Refuses quantized weights and a vocabulary other than ESM's 33 tokens."""
    quantized = [n for n, t in state.items() if type(t) is not torch.Tensor]
    if quantized:
        raise ModelFormatError(f"{where}: quantized weights ({', '.join(quantized[:5])}); the prothash format "
                               f"stores float weights: export the fp32 model")
    if config.vocab_size != VOCAB_SIZE:
        raise ModelFormatError(f"{where}: vocab_size {config.vocab_size}; the prothash package uses ESM's "
                               f"{VOCAB_SIZE}-token vocabulary")
    out = {package_name(n): t.detach().float().contiguous().cpu() for n, t in state.items()}
    tables = rotary_tables(config)
    out.update({name: tables[name.rsplit(".", 1)[1]].clone() for name in cache_names(config)})
    settings = {
        "vocabulary_size": config.vocab_size, "padding_index": PAD_ID, "context_length": config.context_length,
        "teacher_dimensions": config.teacher_dim, "embedding_dimensions": config.d_model,
        "num_attention_heads": config.heads, "hidden_ratio": config.hidden_ratio,
        **dict(zip(STAGE_KEYS, config.stage_layers)),
    }  # fmt: skip
    return settings, out


def export_prothash_v1(model: nn.Module, out_dir: str | Path) -> Path:
    """Write ``model`` (a :class:`~protkit.models.prothash_v1.model.StagedProtHash`) as a directory
    that the prothash 1.0 package's ``ESMCProtHash.from_pretrained(out_dir)`` loads: its config keys
    and tensor names, rotary tables included. The MLM head, when there is one, is written as
    ``sequence_head.*``; the package builds its model without a head, so call its
    ``add_sequence_head()`` and load the weights file again to use it. Returns ``out_dir``."""
    settings, tensors = to_package(model.config, model.state_dict())
    return write_checkpoint(out_dir, settings, tensors)
