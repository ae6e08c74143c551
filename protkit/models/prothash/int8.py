"""int8 ProtHash through torchao: quantizing a model, and the int8 artifact it is saved as.

What is quantized: every ``nn.Linear`` — the encoder blocks' attention and feed-forward layers
and the adapter to the teacher's width — gets torchao int8 weights (symmetric, one scale per
output row), plus int8 dynamic per-token activations for ``int8_dynamic``. The embedding tables
(tokens, and positions for absolute-position models) are stored as fp16 and run in fp32; norms
and the adapter bias stay fp32. The fp16 rounding of the tables is applied by
:func:`quantize_model` itself, so a model loaded back from disk gives bit-identical outputs.

Artifact layout (``results/models/{variant}/int8/``)::

    model.pt            torch.save(state_dict): torchao Int8Tensor weights + fp16/fp32 tensors
    config.json         the ProtHashConfig
    quantization.json   method, torch/torchao/protkit versions, sizes, sha256 (written last)

``model.pt`` loads with ``torch.load(weights_only=True)``: torchao registers its tensor
subclass (``Int8Tensor``) and the small classes it holds as safe globals, and
:func:`load_quantized` allow-lists exactly those classes again for the load, so nothing else
can be unpickled.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
import torch.nn as nn

from protkit.io.atomic import atomic_path, write_json
from protkit.io.digests import file_sha256
from protkit.models.names import CONFIG_FILE, INT8_WEIGHTS_FILE, QUANT_FILE
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.version import VERSION

log = logging.getLogger(__name__)

METHODS = ("int8_dynamic", "int8_weight_only")


def _torchao_config(method: str):
    """The torchao config object for ``method`` (no inductor settings: we do not compile)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    if method == "int8_dynamic":
        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    if method == "int8_weight_only":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    raise ValueError(f"quantize.method must be one of {', '.join(METHODS)}, got {method!r}")


def _embedding_keys(model: ProtHash) -> list[str]:
    """State-dict keys of the embedding tables (stored as fp16)."""
    return [f"{name}.weight" for name, mod in model.named_modules() if isinstance(mod, nn.Embedding)]


def _quantize_in_place(model: ProtHash, method: str) -> None:
    from torchao.quantization import quantize_

    config = _torchao_config(method)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Embedding):
                mod.weight.copy_(mod.weight.half().float())  # what the artifact stores
    quantize_(model, config, filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear))
    model.requires_grad_(False)


def quantize_model(model: ProtHash, method: str = "int8_dynamic") -> ProtHash:
    """An int8 copy of ``model`` on the CPU, in eval mode (``model`` itself is left unchanged).

    ``int8_dynamic``: int8 weights and int8 dynamic per-token activations (torchao
    ``Int8DynamicActivationInt8WeightConfig``). ``int8_weight_only``: int8 weights, float
    activations (``Int8WeightOnlyConfig``). See the module docstring for what is quantized.
    """
    quantized = copy.deepcopy(model).cpu().float().eval()
    _quantize_in_place(quantized, method)
    return quantized


def quantization_method(model: nn.Module) -> str | None:
    """``int8_dynamic``/``int8_weight_only`` for a model from :func:`quantize_model`, else None."""
    from torchao.quantization import Int8Tensor

    for mod in model.modules():
        if isinstance(mod, nn.Linear) and isinstance(mod.weight, Int8Tensor):
            return "int8_dynamic" if mod.weight.act_quant_kwargs is not None else "int8_weight_only"
    return None


def save_quantized(model: ProtHash, out_dir: str | Path, source_weights: str | Path | None = None) -> Path:
    """Write the int8 artifact (``model.pt``, ``config.json``, then ``quantization.json``), each
    file atomically. ``source_weights``: the fp32 ``model.safetensors`` it came from, recorded
    with its sha256 and size. Returns ``out_dir``."""
    method = quantization_method(model)
    if method is None:
        raise ValueError("save_quantized needs a model from quantize_model (no int8 linear layers found)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp16_keys = _embedding_keys(model)
    state = {k: (v.half() if k in fp16_keys else v).detach().cpu() for k, v in model.state_dict().items()}
    weights = out_dir / INT8_WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        torch.save(state, tmp)
    write_json(out_dir / CONFIG_FILE, model.config.to_dict())
    info = {
        "method": method,
        "quantized": sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear)),
        "fp16_tensors": fp16_keys,
        "weights": INT8_WEIGHTS_FILE,
        "weights_bytes": weights.stat().st_size,
        "weights_sha256": file_sha256(weights),
        "torch_version": torch.__version__,
        "torchao_version": _torchao_version(),
        "protkit_version": VERSION,
    }
    if source_weights is not None:
        source_weights = Path(source_weights)
        info["source_weights"] = {
            "path": str(source_weights),
            "bytes": source_weights.stat().st_size,
            "sha256": file_sha256(source_weights),
        }
        info["size_ratio"] = info["weights_bytes"] / info["source_weights"]["bytes"]
    write_json(out_dir / QUANT_FILE, info)
    log.info("wrote %s (%s, %.1f MB)", out_dir, method, info["weights_bytes"] / 1e6)
    return out_dir


def _torchao_version() -> str:
    import torchao

    return torchao.__version__


def _safe_classes() -> list:
    """Exactly the torchao classes an int8 state dict holds besides tensors."""
    from torchao.quantization import Int8Tensor
    from torchao.quantization.granularity import PerRow, PerTensor
    from torchao.quantization.quant_primitives import MappingType
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import QuantizeTensorToInt8Kwargs

    return [Int8Tensor, QuantizeTensorToInt8Kwargs, PerRow, PerTensor, MappingType]


def read_quantization_info(out_dir: str | Path) -> dict:
    """``quantization.json`` of an int8 artifact; FileNotFoundError naming the directory if absent."""
    path = Path(out_dir) / QUANT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{out_dir}: not an int8 ProtHash artifact ({QUANT_FILE} missing); run the quantize rule "
            f"or protkit.quantize.quantize_pretrained"
        )
    return json.loads(path.read_text())


def load_quantized(out_dir: str | Path, device: str | torch.device = "cpu") -> ProtHash:
    """Load an artifact written by :func:`save_quantized` (``torch.load(weights_only=True)``)."""
    out_dir = Path(out_dir)
    info = read_quantization_info(out_dir)
    if info["torchao_version"] != _torchao_version():
        log.warning(
            "%s was written with torchao %s, this is torchao %s",
            out_dir, info["torchao_version"], _torchao_version(),
        )
    config = ProtHashConfig.from_dict(json.loads((out_dir / CONFIG_FILE).read_text()))
    model = ProtHash(config).eval()
    _quantize_in_place(model, info["method"])  # the structure; values come from the file
    with torch.serialization.safe_globals(_safe_classes()):
        state = torch.load(out_dir / info["weights"], map_location="cpu", weights_only=True)
    for key in info["fp16_tensors"]:
        state[key] = state[key].float()
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
