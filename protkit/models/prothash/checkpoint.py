"""Checkpoint formats of the ProtHash student: protkit's own and the ``prothash`` package's.

A checkpoint directory holds ``config.json`` and ``model.safetensors``; the config's keys say
which format it is in:

* **protkit** (:meth:`ProtHash.save_pretrained`): :class:`ProtHashConfig`'s keys (``d_model``,
  ``n_layers``, ...); tensors ``blocks.N.attention.q_proj.weight``, ``adapter.weight``, ...
* **prothash** (the PyPI package, saved by huggingface_hub's ``PyTorchModelHubMixin``):
  ``vocabulary_size``, ``embedding_dimensions``, ...; tensors
  ``encoder.layers.N.stage1.q_proj.weight``, ``head.linear.weight`` (absent when the head is
  an identity), ... Release 0.2.x has rotary positions and saves each layer's frequencies
  (``encoder.layers.N.stage1.position_embeddings.inv_freq``); 0.1.x has learned absolute
  positions (``position_embeddings.weight``). The tensor names tell the two apart.

:func:`read_checkpoint` reads either format into a :class:`Checkpoint` (settings and tensors as named
in the file), which gives the state dict of the model it describes; :func:`write_checkpoint` writes
protkit's format and :func:`to_prothash` converts a state dict into the package's. This module works
on settings and tensors only: the model (:mod:`.model`) imports it, never the other way round.
Every problem with a file raises :class:`ModelFormatError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import torch

from protkit.io.atomic import atomic_path, write_json
from protkit.models.layers import Rotary
from protkit.models.names import CONFIG_FILE, QUANT_FILE, WEIGHTS_FILE, teacher_of_width
from protkit.models.prothash.config import ProtHashConfig
from protkit.sequences.tokenize import PAD_ID, VOCAB_SIZE

Format = Literal["protkit", "prothash"]

PROTKIT_KEYS = frozenset(f.name for f in fields(ProtHashConfig))
PROTHASH_KEYS = frozenset({
    "vocabulary_size", "padding_index", "context_length", "teacher_dimensions", "embedding_dimensions",
    "q_heads", "kv_heads", "hidden_ratio", "num_encoder_layers", "dropout",
})  # fmt: skip

# protkit tensor name -> prothash tensor name ("{}" is the block index).
_NAMES = {
    "token_embeddings.weight": "token_embeddings.weight",
    "position_embeddings.weight": "position_embeddings.weight",
    "adapter.weight": "head.linear.weight",
    "blocks.{}.norm1.weight": "encoder.layers.{}.norm1.weight",
    "blocks.{}.norm2.weight": "encoder.layers.{}.norm2.weight",
    "blocks.{}.attention.q_proj.weight": "encoder.layers.{}.stage1.q_proj.weight",
    "blocks.{}.attention.k_proj.weight": "encoder.layers.{}.stage1.k_proj.weight",
    "blocks.{}.attention.v_proj.weight": "encoder.layers.{}.stage1.v_proj.weight",
    "blocks.{}.attention.out_proj.weight": "encoder.layers.{}.stage1.out_proj.weight",
    "blocks.{}.feed_forward.linear1.weight": "encoder.layers.{}.stage2.linear1.weight",
    "blocks.{}.feed_forward.linear2.weight": "encoder.layers.{}.stage2.linear2.weight",
}
INV_FREQ = "encoder.layers.{}.stage1.position_embeddings.inv_freq"  # 0.2.x rotary buffer


class ModelFormatError(ValueError):
    """A model file protkit cannot read, or a model it cannot write; the message names the file."""


# --- reading files -----------------------------------------------------------------------------
def read_config(path: str | Path) -> dict:
    """``config.json`` as a dict; ModelFormatError (with line and column) when it is not a JSON object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _missing(path) from None
    except json.JSONDecodeError as err:
        raise ModelFormatError(f"{path} line {err.lineno}, column {err.colno}: not valid JSON ({err.msg})") from None
    except (UnicodeDecodeError, OSError) as err:
        raise ModelFormatError(f"{path}: cannot read it as a JSON text file ({err})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a JSON object of model settings, found a {type(data).__name__}")
    return data


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file; ModelFormatError when it is missing, truncated or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelFormatError(
            f"{path}: not a readable safetensors file ({err}); the download or copy is probably "
            f"incomplete or corrupt: fetch the file again"
        ) from None


def _missing(path: Path) -> ModelFormatError:
    return ModelFormatError(f"{path}: file missing (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")


def config_format(config: dict, path: str | Path) -> Format:
    """Which format a ``config.json`` (already read from ``path``) is in, from its keys."""
    keys = set(config)
    if keys == PROTHASH_KEYS:
        return "prothash"
    if keys and keys <= PROTKIT_KEYS and keys & (PROTKIT_KEYS - PROTHASH_KEYS):
        return "protkit"
    hint = ""
    if keys & (PROTHASH_KEYS - PROTKIT_KEYS):
        missing, extra = sorted(PROTHASH_KEYS - keys), sorted(keys - PROTHASH_KEYS)
        hint = (f" It looks like a prothash config (missing: {', '.join(missing) or '-'}; unexpected: "
                f"{', '.join(extra) or '-'}): protkit reads prothash releases 0.1.x and 0.2.x only.")
    elif keys & PROTKIT_KEYS:
        hint = f" Unknown protkit keys: {', '.join(sorted(keys - PROTKIT_KEYS)) or '-'}."
    raise ModelFormatError(
        f"{path}: unknown model format. Keys found: {', '.join(sorted(keys)) or '(none)'}. Expected "
        f"protkit's keys ({', '.join(sorted(PROTKIT_KEYS))}) or the prothash package's "
        f"({', '.join(sorted(PROTHASH_KEYS))}).{hint}"
    )


def detect_format(directory: str | Path) -> Format:
    """Format of the checkpoint directory ``directory``, from the keys of its ``config.json``."""
    path = Path(directory) / CONFIG_FILE
    return config_format(read_config(path), path)


def format_label(directory: str | Path) -> str:
    """``protkit``, ``prothash-0.2`` (rotary) or ``prothash-0.1`` (absolute positions): the format
    and, for the package's, the release line, read from the weights file's tensor names."""
    if detect_format(directory) == "protkit":
        return "protkit"
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as handle:
            absolute = "position_embeddings.weight" in handle.keys()
    except (SafetensorError, OSError) as err:
        raise ModelFormatError(f"{path}: not a readable safetensors file ({err})") from None
    return "prothash-0.1" if absolute else "prothash-0.2"


# --- names and shapes ----------------------------------------------------------------------------
def prothash_name(name: str) -> str:
    """The prothash package's name for protkit's tensor ``name`` (KeyError when it has none)."""
    parts = name.split(".")
    if parts[0] == "blocks":
        return _NAMES["blocks.{}." + ".".join(parts[2:])].format(parts[1])
    return _NAMES[name]


def check_state(state: dict[str, torch.Tensor], shapes: dict[str, torch.Size], weights: Path, config_path: Path,
                optional: frozenset[str] = frozenset()) -> None:
    """Refuse a state dict (the file's names) whose names or shapes differ from ``shapes``, the
    model that ``config_path`` describes; ``optional`` names may be absent."""
    missing = [n for n in shapes if n not in state]
    unexpected = sorted(set(state) - set(shapes) - optional)
    wrong = [f"{n} {tuple(state[n].shape)} (expected {tuple(s)})"
             for n, s in shapes.items() if n in state and state[n].shape != s]
    problems = [f"{label}: {_few(items)}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    if problems:
        raise ModelFormatError(
            f"{weights}: tensors do not match the model described by {config_path} ({'; '.join(problems)}). "
            f"The two files come from different models, or one is damaged"
        )


def _few(items: list[str], n: int = 5) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# --- reading a checkpoint -------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory as read: its format, the settings as a :class:`ProtHashConfig` and the
    tensors as named in the file."""

    directory: Path
    format: Format
    config: ProtHashConfig
    tensors: dict[str, torch.Tensor]
    optional: frozenset[str] = frozenset()  # file names that may be present or not (0.2.x inv_freq)

    def file_name(self, name: str) -> str:
        """The file's name for protkit's tensor ``name``."""
        return prothash_name(name) if self.format == "prothash" else name

    def state_dict(self, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
        """protkit's state dict of the model whose tensor shapes are ``shapes`` (protkit names);
        ModelFormatError naming the file when the file's names or shapes differ."""
        in_file = {self.file_name(n): s for n, s in shapes.items()}
        check_state(self.tensors, in_file, self.directory / WEIGHTS_FILE, self.directory / CONFIG_FILE,
                    self.optional)
        return {n: self.tensors[self.file_name(n)] for n in shapes}


def read_checkpoint(directory: str | Path) -> Checkpoint:
    """The checkpoint in ``directory`` (protkit's or the prothash package's format)."""
    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if (directory / QUANT_FILE).is_file() and not weights.is_file():
        raise ModelFormatError(
            f"{directory}: an int8 artifact ({QUANT_FILE}), not an fp32 checkpoint; load it with "
            f"protkit.models.prothash.int8.load_quantized or `protkit embed --int8`"
        )
    raw = read_config(config_path)
    fmt = config_format(raw, config_path)
    tensors = read_weights(weights)
    if fmt == "protkit":
        try:
            config = ProtHashConfig.from_dict(raw)
        except (TypeError, ValueError) as err:
            raise ModelFormatError(f"{config_path}: {err}") from None
        return Checkpoint(directory, fmt, config, tensors)
    config = prothash_config(raw, tensors, directory)
    absolute = config.positions == "absolute"
    optional = frozenset() if absolute else frozenset(INV_FREQ.format(i) for i in range(config.n_layers))
    if not absolute:
        _check_inv_freq(tensors, config, weights)
    return Checkpoint(directory, fmt, config, tensors, optional)


def check_package_sizes(config: dict, keys: set[str] | frozenset[str], config_path: Path) -> None:
    """A ``prothash`` package config's ``keys`` are integers (>= 0 for ``padding_index``, else >= 1) and
    its vocabulary is protkit's; ModelFormatError naming ``config_path`` otherwise."""
    for key in sorted(keys):
        value, least = config[key], 0 if key == "padding_index" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ModelFormatError(f"{config_path}: {key} must be an integer >= {least}, got {value!r}")
    if config["vocabulary_size"] != VOCAB_SIZE or config["padding_index"] != PAD_ID:
        raise ModelFormatError(
            f"{config_path}: vocabulary_size {config['vocabulary_size']} / padding_index {config['padding_index']}; "
            f"protkit tokenizes with ESM's {VOCAB_SIZE}-token vocabulary (padding id {PAD_ID}), so this model's "
            f"token ids would mean other letters"
        )


def prothash_config(config: dict, state: dict[str, torch.Tensor], directory: str | Path) -> ProtHashConfig:
    """The :class:`ProtHashConfig` of a prothash 0.1.x / 0.2.x ``config.json`` (keys as
    :func:`config_format` accepts) whose tensors are ``state`` (0.1.x has absolute positions)."""
    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    check_package_sizes(config, PROTHASH_KEYS - {"dropout"}, config_path)
    absolute = "position_embeddings.weight" in state
    if absolute and any(".position_embeddings.inv_freq" in name for name in state):
        raise ModelFormatError(f"{weights}: holds both absolute (0.1.x) and rotary (0.2.x) position tensors")
    try:
        return ProtHashConfig(
            d_model=config["embedding_dimensions"], q_heads=config["q_heads"], kv_heads=config["kv_heads"],
            n_layers=config["num_encoder_layers"], hidden_ratio=config["hidden_ratio"],
            context_length=config["context_length"], positions="absolute" if absolute else "rotary",
            teacher_dim=config["teacher_dimensions"], teacher=teacher_of_width(config["teacher_dimensions"]),
            vocab_size=config["vocabulary_size"], dropout=float(config["dropout"]), adapter_bias=False,
        )  # fmt: skip
    except (TypeError, ValueError) as err:
        raise ModelFormatError(f"{config_path}: {err}") from None


def rotary_frequencies(config: ProtHashConfig) -> torch.Tensor:
    """The rotary frequencies of a model of ``config`` (prothash 0.2.x's ``inv_freq``).  # (Dh/2,)"""
    return Rotary(config.head_dim, config.rotary_base, seq_dim=2).inv_freq


def _check_inv_freq(state: dict[str, torch.Tensor], config: ProtHashConfig, weights: Path) -> None:
    """Refuse saved rotary frequencies that differ from the ones protkit computes for ``config``
    (a missing buffer is fine: prothash 0.2.x computes it from the same formula)."""
    ours = rotary_frequencies(config)
    for i in range(config.n_layers):
        saved = state.get(INV_FREQ.format(i))
        if saved is None:
            continue
        if saved.shape != ours.shape or not torch.allclose(saved.float(), ours, rtol=1e-6, atol=0.0):
            raise ModelFormatError(
                f"{weights}: {INV_FREQ.format(i)} differs from the rotary frequencies of prothash 0.2.x for "
                f"context_length {config.context_length} and head width {config.head_dim} (base "
                f"{config.rotary_base}); protkit cannot reproduce this model's positions"
            )


# --- writing --------------------------------------------------------------------------------------------
def write_checkpoint(directory: str | Path, settings: dict, state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` (CPU tensors) to ``model.safetensors``, then ``settings`` to ``config.json``,
    each atomically; returns ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(directory / CONFIG_FILE, settings)
    return directory


def to_prothash(config: ProtHashConfig, state: dict[str, torch.Tensor],
                where: str = "model") -> tuple[dict, dict[str, torch.Tensor]]:
    """A model's settings and state dict -> the prothash package's ``config.json`` dict and state
    dict. ``where`` names the model in messages. Refuses what the package cannot express: quantized
    weights, an adapter with a bias, a vocabulary other than ESM's 33 tokens."""
    quantized = [n for n, t in state.items() if type(t) is not torch.Tensor]
    if quantized:
        raise ModelFormatError(
            f"{where}: quantized weights ({_few(quantized)}); the prothash format stores float weights: "
            f"export the fp32 model (results/models/VARIANT, not its int8/)"
        )
    if "adapter.bias" in state:
        raise ModelFormatError(
            f"{where}: the adapter has a bias (adapter_bias: true, the default of models trained before "
            f"protkit had the option); ProtHash's adapter head has none, so the exported model would give "
            f"other vectors. Retrain with architecture.adapter_bias: false (the default) to export"
        )
    if config.vocab_size != VOCAB_SIZE:
        raise ModelFormatError(
            f"{where}: vocab_size {config.vocab_size}; the prothash package uses ESM's {VOCAB_SIZE}-token vocabulary"
        )
    out = {prothash_name(n): t.detach().float().contiguous().cpu() for n, t in state.items()}
    if config.positions == "rotary":
        for i in range(config.n_layers):
            out[INV_FREQ.format(i)] = rotary_frequencies(config).clone()
    settings = {
        "vocabulary_size": config.vocab_size, "padding_index": PAD_ID, "context_length": config.context_length,
        "teacher_dimensions": config.teacher_dim, "embedding_dimensions": config.d_model,
        "q_heads": config.q_heads, "kv_heads": config.kv_heads, "hidden_ratio": config.hidden_ratio,
        "num_encoder_layers": config.n_layers, "dropout": config.dropout,
    }  # fmt: skip
    return settings, out
