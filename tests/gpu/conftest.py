"""Settings and fixtures of the CUDA checks (``pytest -m cuda tests/gpu``), read from the environment:

- ``PROTKIT_GPU_DEVICE``: ``cuda`` (default) or ``cpu``. ``cpu`` is the dry run: every check runs
  with the CPU standing in for the GPU. With ``cuda`` and no usable GPU, every test here is skipped.
- ``PROTKIT_GPU_SIZE``: ``full`` (default: the sizes the GPU run measures) or ``tiny`` (small models
  and a handful of short proteins, for the dry run).
- ``PROTKIT_GPU_DATA``: the directory holding ``deeploc_test.fasta`` (default ``../shared/data``
  beside the repository); tests that need it are skipped when it is absent.
- ``PROTKIT_GPU_RECORD``: a JSON-lines file; each test appends one line of what it measured
  (``{"test", "device", "size", ...figures}``) before it asserts anything.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

from benchmarks.common import SEED, device_name
from protkit.sequences.alphabet import clean_sequence
from protkit.sequences.fasta import read_fasta

HERE = Path(__file__).resolve().parent
DEVICES = ("cuda", "cpu")
SIZES = ("full", "tiny")
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FASTA = "deeploc_test.fasta"
NO_GPU = "needs a CUDA GPU (set PROTKIT_GPU_DEVICE=cpu for the CPU dry run)"

Record = Callable[..., None]  # record(name: str, **figures)


def setting(name: str, choices: tuple[str, ...]) -> str:
    """The environment variable ``name`` (default: the first of ``choices``), checked."""
    value = os.environ.get(name, choices[0]).strip().lower() or choices[0]
    if value not in choices:
        raise pytest.UsageError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check the settings, and skip every test of this folder when the device is CUDA and no GPU is usable."""
    ours = [item for item in items if HERE in item.path.parents]
    if not ours:
        return
    setting("PROTKIT_GPU_SIZE", SIZES)  # a wrong value stops the run here, not in every test
    if setting("PROTKIT_GPU_DEVICE", DEVICES) == "cuda" and not torch.cuda.is_available():
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=NO_GPU))


@pytest.fixture(scope="session")
def gpu_device() -> torch.device:
    """The device under test: ``cuda``, or the CPU in the dry run."""
    return torch.device(setting("PROTKIT_GPU_DEVICE", DEVICES))


@pytest.fixture(scope="session")
def gpu_size() -> str:
    """``full`` or ``tiny``."""
    return setting("PROTKIT_GPU_SIZE", SIZES)


@pytest.fixture(scope="module", autouse=True)
def tiny_threads(gpu_size: str, request: pytest.FixtureRequest) -> None:
    """One torch thread at tiny sizes (the root conftest's ``one_torch_thread``: tiny models run several
    times faster so on a loaded 2-core machine); full sizes keep every core for their CPU references."""
    if gpu_size == "tiny":
        request.getfixturevalue("one_torch_thread")


@pytest.fixture(scope="session")
def deeploc_proteins() -> list[tuple[str, str]]:
    """Every ``(id, sequence)`` of ``deeploc_test.fasta`` (upper case, no terminal ``*``) in a fixed
    seeded order: a prefix is a random sample with the real length mix."""
    path = Path(os.environ.get("PROTKIT_GPU_DATA") or DEFAULT_DATA) / FASTA
    if not path.is_file():
        pytest.skip(f"real protein data absent: {path} not found "
                    f"(set PROTKIT_GPU_DATA to the directory holding {FASTA})")
    records = [(r.id, clean_sequence(r.sequence)) for r in read_fasta(path)]
    order = np.random.default_rng(SEED).permutation(len(records))
    return [records[i] for i in order]


def json_value(value: Any) -> Any:
    """``value`` as JSON takes it: numpy scalars and arrays as Python numbers and lists, NaN and
    infinities as strings (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@pytest.fixture
def record(gpu_device: torch.device, gpu_size: str) -> Record:
    """``record(name, **figures)``: one JSON line ``{"test", "device", "size", **figures}`` appended to
    ``PROTKIT_GPU_RECORD`` (nothing when it is unset). Tests call it before their asserts."""
    target = os.environ.get("PROTKIT_GPU_RECORD")

    def write(name: str, **figures: Any) -> None:
        if not target:
            return
        line = {"test": name, "device": device_name(gpu_device), "size": gpu_size, **json_value(figures)}
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")

    return write


@pytest.fixture(scope="module")
def strict_fp32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and cuDNN in the module's tests (fp32 references are fp32), restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
