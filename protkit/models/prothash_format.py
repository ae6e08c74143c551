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

:func:`load_pretrained_dir` reads either format; :func:`export_prothash` writes the package's.
Every problem with a file raises :class:`ModelFormatError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Literal

import torch

from protkit.atomic import atomic_path, write_json
from protkit.models.prothash import ProtHash, ProtHashConfig
from protkit.models.rotary import Rotary
from protkit.quantize import QUANT_FILE
from protkit.tokenize import PAD_ID, VOCAB_SIZE

Format = Literal["protkit", "prothash"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PROTKIT_KEYS = frozenset(f.name for f in fields(ProtHashConfig))
PROTHASH_KEYS = frozenset({
    "vocabulary_size", "padding_index", "context_length", "teacher_dimensions", "embedding_dimensions",
    "q_heads", "kv_heads", "hidden_ratio", "num_encoder_layers", "dropout",
})  # fmt: skip
TEACHERS = {960: "esmc_300m", 1152: "esmc_600m"}  # teacher_dimensions -> ProtHashConfig.teacher

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
def expected_shapes(config: ProtHashConfig) -> dict[str, torch.Size]:
    """protkit tensor name -> shape, for a model of ``config`` (built on the meta device)."""
    with torch.device("meta"):
        return {name: t.shape for name, t in ProtHash(config).state_dict().items()}


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


# --- prothash -> protkit ----------------------------------------------------------------------------
def from_prothash(
    config: dict, state: dict[str, torch.Tensor], directory: str | Path
) -> tuple[ProtHashConfig, dict[str, torch.Tensor]]:
    """A prothash 0.1.x / 0.2.x ``config.json`` (keys as :func:`config_format` accepts) + state dict
    -> ``ProtHashConfig`` + protkit state dict."""
    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for key in sorted(PROTHASH_KEYS - {"dropout"}):
        value, least = config[key], 0 if key == "padding_index" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ModelFormatError(f"{config_path}: {key} must be an integer >= {least}, got {value!r}")
    if config["vocabulary_size"] != VOCAB_SIZE or config["padding_index"] != PAD_ID:
        raise ModelFormatError(
            f"{config_path}: vocabulary_size {config['vocabulary_size']} / padding_index {config['padding_index']}; "
            f"protkit tokenizes with ESM's {VOCAB_SIZE}-token vocabulary (padding id {PAD_ID}), so this model's "
            f"token ids would mean other letters"
        )
    absolute = "position_embeddings.weight" in state
    if absolute and any(".position_embeddings.inv_freq" in name for name in state):
        raise ModelFormatError(f"{weights}: holds both absolute (0.1.x) and rotary (0.2.x) position tensors")
    try:
        ours = ProtHashConfig(
            d_model=config["embedding_dimensions"], q_heads=config["q_heads"], kv_heads=config["kv_heads"],
            n_layers=config["num_encoder_layers"], hidden_ratio=config["hidden_ratio"],
            context_length=config["context_length"], positions="absolute" if absolute else "rotary",
            teacher_dim=config["teacher_dimensions"], teacher=TEACHERS.get(config["teacher_dimensions"], "unknown"),
            vocab_size=config["vocabulary_size"], dropout=float(config["dropout"]), adapter_bias=False,
        )  # fmt: skip
    except (TypeError, ValueError) as err:
        raise ModelFormatError(f"{config_path}: {err}") from None
    names = {n: prothash_name(n) for n in expected_shapes(ours)}  # protkit name -> name in the file
    inv_freq = frozenset() if absolute else frozenset(INV_FREQ.format(i) for i in range(ours.n_layers))
    check_state(state, {names[n]: s for n, s in expected_shapes(ours).items()}, weights, config_path, inv_freq)
    if not absolute:
        _check_inv_freq(state, ours, weights)
    return ours, {n: state[p] for n, p in names.items()}


def _check_inv_freq(state: dict[str, torch.Tensor], config: ProtHashConfig, weights: Path) -> None:
    """Refuse saved rotary frequencies that differ from the ones protkit computes for ``config``
    (a missing buffer is fine: prothash 0.2.x computes it from the same formula)."""
    ours = Rotary(config.head_dim, config.rotary_base, seq_dim=2).inv_freq  # (Dh/2,)
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


# --- loading -------------------------------------------------------------------------------------------
def load_pretrained_dir(directory: str | Path, device: str | torch.device = "cpu") -> ProtHash:
    """Load a local checkpoint directory in protkit's or the prothash package's format (eval mode).

    The weights file itself (``model.safetensors``) is left as it is, so its sha256 fingerprints
    the model in either format."""
    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if (directory / QUANT_FILE).is_file() and not weights.is_file():
        raise ModelFormatError(
            f"{directory}: an int8 artifact ({QUANT_FILE}), not an fp32 checkpoint; load it with "
            f"protkit.quantize.load_quantized or `protkit embed --int8`"
        )
    raw = read_config(config_path)
    fmt = config_format(raw, config_path)
    state = read_weights(weights)
    if fmt == "prothash":
        config, state = from_prothash(raw, state, directory)
    else:
        try:
            config = ProtHashConfig.from_dict(raw)
        except (TypeError, ValueError) as err:
            raise ModelFormatError(f"{config_path}: {err}") from None
        check_state(state, expected_shapes(config), weights, config_path)
    model = ProtHash(config)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# --- protkit -> prothash --------------------------------------------------------------------------------
def to_prothash(model: ProtHash, where: str = "model") -> tuple[dict, dict[str, torch.Tensor]]:
    """``model`` -> the prothash package's ``config.json`` dict and state dict. ``where`` names the
    model in messages. Refuses what the package cannot express (see :func:`export_prothash`)."""
    config = model.config
    state = model.state_dict()
    quantized = [n for n, t in state.items() if type(t) is not torch.Tensor]
    if quantized:
        raise ModelFormatError(
            f"{where}: quantized weights ({_few(quantized)}); the prothash format stores float weights: "
            f"export the fp32 model (results/models/VARIANT, not its int8/)"
        )
    if getattr(model.adapter, "bias", None) is not None:
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
        for i, block in enumerate(model.blocks):
            out[INV_FREQ.format(i)] = block.attention.rotary.inv_freq.detach().float().cpu().clone()
    settings = {
        "vocabulary_size": config.vocab_size, "padding_index": PAD_ID, "context_length": config.context_length,
        "teacher_dimensions": config.teacher_dim, "embedding_dimensions": config.d_model,
        "q_heads": config.q_heads, "kv_heads": config.kv_heads, "hidden_ratio": config.hidden_ratio,
        "num_encoder_layers": config.n_layers, "dropout": config.dropout,
    }  # fmt: skip
    return settings, out


def export_prothash(model_or_dir: ProtHash | str | Path, out_dir: str | Path) -> Path:
    """Write a directory that the prothash package's ``ProtHash.from_pretrained(out_dir)`` loads.

    Rotary models are written in prothash 0.2.x's layout, absolute-position models in 0.1.x's
    (``position_embeddings.weight``; load those with prothash 0.1.x). Every tensor the package's
    model has is written, rotary ``inv_freq`` buffers included: its loader uses ``strict=False``
    and would silently keep a missing tensor's random initial value. ``config.json`` holds exactly
    the package's constructor arguments.

    Refused, with a ModelFormatError saying why: an int8 artifact (a directory with
    ``quantization.json``, or quantized weights), an adapter with a bias, a vocabulary other than
    ESM's 33 tokens. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if isinstance(model_or_dir, ProtHash):
        model, where = model_or_dir, "model"
    else:
        source = Path(model_or_dir)
        if (source / QUANT_FILE).is_file():
            raise ModelFormatError(
                f"{source}: an int8 artifact ({QUANT_FILE}); the prothash format stores float weights: "
                f"export the fp32 model directory it was made from (the parent of int8/)"
            )
        if source.resolve() == out_dir.resolve():
            raise ModelFormatError(f"{out_dir}: export into another directory than the source model's")
        model, where = load_pretrained_dir(source), str(source)
    settings, state = to_prothash(model, where)
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(out_dir / CONFIG_FILE, settings)
    return out_dir


__all__ = [
    "ModelFormatError", "detect_format", "format_label", "load_pretrained_dir", "export_prothash",
    "from_prothash", "to_prothash", "read_config", "read_weights",
]  # fmt: skip
