"""The ESMC teacher: the model (:mod:`.model`, parameter names equal esm's) and its weights
(:mod:`.weights`: Hub presets, local files, seeded random weights for the demo)."""

from protkit.models.esmc.model import ESMC, ESMC_PRESETS, ESMCConfig, ESMCOutput
from protkit.models.esmc.weights import HUB_WEIGHTS, load_esmc, random_esmc, resolve_weights, save_weights

__all__ = [
    "ESMC", "ESMCConfig", "ESMCOutput", "ESMC_PRESETS", "HUB_WEIGHTS", "load_esmc", "random_esmc",
    "resolve_weights", "save_weights",
]  # fmt: skip
