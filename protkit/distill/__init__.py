"""The distill stage (``workflow/rules/distill.smk``): a ProtHash student trained on a teacher cache,
optionally with quantization-aware training; resumable from checkpoints."""

from protkit.distill.config import TrainConfig, VariantSettings, build_model_config, variant_settings
from protkit.distill.loop import train
from protkit.distill.objectives import DistillData, distill_loss, heldout_cosine
from protkit.distill.qat import QATSettings
from protkit.distill.run import distill_from_cache

__all__ = [
    "DistillData", "QATSettings", "TrainConfig", "VariantSettings", "build_model_config", "distill_from_cache",
    "distill_loss", "heldout_cosine", "train", "variant_settings",
]  # fmt: skip
