"""Quantization-aware training (QAT) for ProtHash through torchao's ``QATConfig``.

Only the encoder blocks' linear layers get fake quantization (embeddings, norms and the adapter
stay float), matching what the int8 stage quantizes. Weights: int8, symmetric, per group of
``group_size`` input features (``None``: one group per output row, torchao's ``PerRow`` default).
Activations (optional, on by default): int8 dynamic per-token asymmetric fake quantization, the
closest fake-quant scheme torchao offers to ``Int8DynamicActivationInt8WeightConfig``'s symmetric
per-token activations. All quantizers are dynamic (scales recomputed every forward), so they hold
no state: ``prepare`` and ``convert`` leave the state-dict keys unchanged, and ``convert`` returns
plain ``nn.Linear`` layers, so the trained model saves as an ordinary float ProtHash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash


@dataclass(frozen=True)
class QATSettings:
    enabled: bool = False
    group_size: int | None = 32  # weight group size along in_features; None = per output row
    activations: bool = True  # int8 dynamic per-token activation fake quantization

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None, key: str = "qat") -> "QATSettings":
        """Settings from a config mapping; ``key`` (e.g. ``variants.tiny.qat``) prefixes errors."""
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{key}: unknown keys {', '.join(unknown)} (known: enabled, group_size, activations)")
        for name in ("enabled", "activations"):
            if name in data and not isinstance(data[name], bool):
                raise ValueError(f"{key}.{name} must be true or false, got {data[name]!r}")
        group_size = data.get("group_size", cls.group_size)
        valid = isinstance(group_size, int) and not isinstance(group_size, bool) and group_size > 0
        if group_size is not None and not valid:
            raise ValueError(f"{key}.group_size must be a positive integer or null, got {group_size!r}")
        return cls(**data)


def encoder_linears(model: ProtHash) -> dict[str, nn.Linear]:
    """The linear layers inside the encoder blocks, by qualified name."""
    return {f"blocks.{name}": mod for name, mod in model.blocks.named_modules() if isinstance(mod, nn.Linear)}


def check_group_size(config: ProtHashConfig, settings: QATSettings, key: str = "qat") -> None:
    """Raise naming ``{key}.group_size`` when it does not divide the in_features of a block linear
    of a model of ``config`` (built on the meta device)."""
    if settings.group_size is None:
        return
    with torch.device("meta"):
        linears = encoder_linears(ProtHash(config)).items()
    bad = {name: lin.in_features for name, lin in linears if lin.in_features % settings.group_size}
    if bad:
        widths = sorted(set(bad.values()))
        raise ValueError(
            f"{key}.group_size = {settings.group_size} does not divide the input width of "
            f"{len(bad)} encoder linear layer(s) (in_features {widths}, e.g. {next(iter(bad))}); "
            f"choose a divisor of {widths[0]}, or null for one group per row"
        )


def _weight_config(settings: QATSettings):
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    if settings.group_size is None:
        return IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    return IntxFakeQuantizeConfig(torch.int8, group_size=settings.group_size, is_symmetric=True)


def prepare_qat(model: ProtHash, settings: QATSettings, key: str = "qat") -> None:
    """Swap the encoder blocks' linears for fake-quantized ones, in place (parameters are shared)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    check_group_size(model.config, settings, key)
    activation_config = (
        IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False) if settings.activations else None
    )
    quantize_(
        model.blocks,
        QATConfig(activation_config=activation_config, weight_config=_weight_config(settings), step="prepare"),
    )


def convert_qat(model: ProtHash) -> None:
    """Swap fake-quantized linears back to plain float ``nn.Linear`` layers, in place."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model.blocks, QATConfig(step="convert"))


def fake_quantized_layers(model: nn.Module) -> int:
    """Number of torchao fake-quantized linear layers in ``model``."""
    from torchao.quantization.qat import FakeQuantizedLinear

    return sum(isinstance(m, FakeQuantizedLinear) for m in model.modules())
