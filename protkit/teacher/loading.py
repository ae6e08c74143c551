"""The teacher model of a cache build: real ESMC weights, or the seeded random ESMC of the demo."""

from __future__ import annotations

from pathlib import Path

import torch

from protkit.io.digests import file_sha256
from protkit.io.outputs import claim_outputs
from protkit.models.device import resolve_device, resolve_dtype
from protkit.models.precision import resolve_precision
from protkit.models.esmc.model import ESMC, ESMCConfig
from protkit.models.esmc.weights import load_esmc, random_esmc, resolve_weights, save_weights

RANDOM_EXTRA_KEYS = {"seed", "qk_gain"}


def random_teacher_config(random: dict) -> tuple[ESMCConfig, int]:
    """ESMCConfig and seed from a ``random`` config section (ESMCConfig fields plus ``seed`` and
    ``qk_gain``, see :func:`~protkit.models.esmc.weights.random_esmc`)."""
    fields = set(ESMCConfig.__dataclass_fields__)
    unknown = sorted(set(random) - fields - RANDOM_EXTRA_KEYS)
    if unknown:
        raise ValueError(f"teacher random: unknown key(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(fields | RANDOM_EXTRA_KEYS))}")
    config = ESMCConfig(**{k: v for k, v in random.items() if k not in RANDOM_EXTRA_KEYS})
    return config, int(random.get("seed", 0))


def write_random_teacher(random: dict, path: str | Path) -> Path:
    """Write seeded random ESMC weights (offline demo teacher) described by ``random`` to ``path``."""
    config, seed = random_teacher_config(random)
    with claim_outputs([path]):
        save_weights(random_esmc(config, seed, qk_gain=float(random.get("qk_gain", 1.0))), path)
    return Path(path)


def teacher_from_config(
    weights: str | Path,
    random: dict | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "fp32",
) -> tuple[ESMC, str]:
    """The eval-mode teacher and the sha256 of its weights file.

    ``weights``: a preset name (``esmc_300m``/``esmc_600m``, via the Hub cache), a weights file or
    a Hub-like directory. ``random``: the architecture of a random demo teacher whose weights file
    :func:`write_random_teacher` wrote (needed when its heads are not 64 wide). ``dtype``: a torch dtype or
    ``fp32``/``bf16``/``fp16``/``auto`` (:func:`~protkit.models.precision.auto_precision`: bf16 on GPUs and
    on CPUs with bf16 units, fp32 on other CPUs).
    """
    try:
        path = resolve_weights(weights)
    except FileNotFoundError as exc:
        hint = " (a random demo teacher: write it first with protkit.teacher.write_random_teacher)" if random else ""
        raise FileNotFoundError(f"{exc}{hint}") from exc
    config = random_teacher_config(random)[0] if random else None
    device = resolve_device(device) if isinstance(device, str) else device
    if isinstance(dtype, str):
        dtype = resolve_dtype(resolve_precision(dtype, device, "teacher"))
    model = load_esmc(path, device=device, dtype=dtype, config=config)
    return model, file_sha256(path)
