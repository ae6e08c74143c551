"""Loading ESMC weights: from the Hugging Face Hub, a local file or a Hub-like directory.

Only tensors are ever deserialised (``torch.load(weights_only=True)`` or safetensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from protkit.io.atomic import atomic_path
from protkit.models.esmc.model import ESMC, ESMC_PRESETS, ESMCConfig
from protkit.models.hub import HubUnreachable, hub_fetch


@dataclass(frozen=True)
class HubWeights:
    repo_id: str
    filename: str


HUB_WEIGHTS: dict[str, HubWeights] = {
    "esmc_300m": HubWeights("EvolutionaryScale/esmc-300m-2024-12", "data/weights/esmc_300m_2024_12_v0.pth"),
    "esmc_600m": HubWeights("EvolutionaryScale/esmc-600m-2024-12", "data/weights/esmc_600m_2024_12_v0.pth"),
}
HEAD_DIM = 64  # both released ESMC models use 64-wide heads


def resolve_weights(source: str | Path) -> Path:
    """Path of a weights file for ``source``.

    ``source`` may be a preset name (``esmc_300m``/``esmc_600m``, fetched through huggingface_hub,
    which honours ``HF_HUB_OFFLINE`` and its cache), a ``.pth``/``.safetensors`` file, or a
    directory laid out like the Hub repo (``data/weights/*.pth``) or holding one weights file.
    """
    name = str(source)
    if name in HUB_WEIGHTS:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        hub = HUB_WEIGHTS[name]
        try:
            return hub_fetch(hf_hub_download, repo_id=hub.repo_id, filename=hub.filename)
        except (HubUnreachable, LocalEntryNotFoundError) as error:  # offline or no network, not cached
            raise FileNotFoundError(
                f"ESMC weights {name!r} ({hub.repo_id}, {hub.filename}) are not in the Hugging Face cache "
                f"and the Hub cannot be reached ({error}). On a machine with internet access run "
                f"`hf download {hub.repo_id} {hub.filename}` with the same HF_HOME/HF_HUB_CACHE, "
                f"or pass a local .pth/.safetensors file instead of {name!r}."
            ) from error
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        for pattern in ("data/weights/*.pth", "*.safetensors", "*.pth", "*.pt"):
            found = sorted(path.glob(pattern))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise FileNotFoundError(f"{path}: several weight files match {pattern}: {[f.name for f in found]}")
        raise FileNotFoundError(f"{path}: no ESMC weights (data/weights/*.pth, *.safetensors or *.pth)")
    raise FileNotFoundError(
        f"ESMC weights {name!r}: not a file or directory, and not one of {', '.join(HUB_WEIGHTS)}"
    )


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth`` file; never unpickles arbitrary objects."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def infer_config(state: dict[str, torch.Tensor]) -> ESMCConfig:
    """ESMC configuration implied by a state dict's shapes (64-wide heads, as released)."""
    d_model = state["embed.weight"].shape[1]
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("transformer.blocks."))
    for preset in ESMC_PRESETS.values():
        if (preset.d_model, preset.n_layers) == (d_model, n_layers):
            return preset
    return ESMCConfig(d_model=d_model, n_heads=d_model // HEAD_DIM, n_layers=n_layers)


def load_esmc(
    source: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    config: ESMCConfig | None = None,
) -> ESMC:
    """An eval-mode :class:`ESMC` with weights from ``source`` (see :func:`resolve_weights`)."""
    state = load_state_dict(resolve_weights(source))
    model = ESMC(config or infer_config(state))
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def random_esmc(config: ESMCConfig, seed: int, qk_gain: float = 1.0) -> ESMC:
    """An ESMC with seeded random weights (for tests and the offline demo).

    ``qk_gain`` multiplies the query/key LayerNorm gains: with the default initialisation attention is
    nearly uniform, so a random ESMC's pooled vectors are almost a linear function of amino-acid
    composition; a gain of about 4 sharpens attention so the output depends on sequence context,
    which makes the demo teacher a fairer stand-in for a trained one.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = ESMC(config)
    finally:
        torch.random.set_rng_state(generator_state)
    with torch.no_grad():
        for block in model.transformer.blocks:
            block.attn.q_ln.weight.mul_(qk_gain)
            block.attn.k_ln.weight.mul_(qk_gain)
    return model.eval()


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Atomically save a state dict as ``.safetensors`` or ``.pth`` (by suffix)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp))
        else:
            torch.save(state, tmp)
