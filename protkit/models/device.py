"""Device and dtype selection with a CPU fallback."""

from __future__ import annotations

import logging
import os

import torch

from protkit.models.precision import PRECISIONS

log = logging.getLogger(__name__)

DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16)))


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. ``cuda`` without a GPU falls back to CPU with a
    warning (a SLURM GPU job on a node whose GPU is invisible should still finish)."""
    if requested not in ("auto", "cpu", "cuda") and not requested.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {requested!r}")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if requested == "auto" else requested)
    if requested != "auto" or os.environ.get("CUDA_VISIBLE_DEVICES"):
        log.warning(
            "CUDA requested (device=%s, CUDA_VISIBLE_DEVICES=%s) but no CUDA device is usable; running on CPU",
            requested, os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        )
    return torch.device("cpu")


def precision_of(dtype: torch.dtype) -> str:
    """torch dtype -> ``fp32``/``bf16``/``fp16``."""
    names = {v: k for k, v in DTYPES.items()}
    if dtype not in names:
        raise ValueError(f"no precision name for {dtype}; expected one of {', '.join(map(str, names))}")
    return names[dtype]


def resolve_dtype(name: str) -> torch.dtype:
    """``fp32``/``bf16``/``fp16`` -> torch dtype."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}") from None
