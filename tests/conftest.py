"""Shared fixtures: the real protein data in ../shared/data and an offline Hugging Face cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest
from tiny_models import TINY_STUDENT

if TYPE_CHECKING:
    from protkit.sequences.fasta import FastaRecord

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
sys.path.insert(0, str(REPO_ROOT))  # the repository root holds benchmarks/ (tests reuse its data helpers)


@pytest.fixture(scope="session", autouse=True)
def protkit_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """protkit's own cache (ONNX exports of the onnxruntime backend) in a temporary directory,
    never the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("protkit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROTKIT_CACHE_DIR", str(cache))
        yield cache


TEST_CPU_FLAGS = "avx2 fma"  # the AVX2 class: defaults fp32, onnxruntime for students


@pytest.fixture(scope="session", autouse=True)
def same_cpu_paths_on_every_machine() -> Iterator[str]:
    """Run the suite on the AVX2 class's ``auto`` paths on every machine (subprocesses too, through
    ``PROTKIT_CPU_FLAGS``), so that tolerances written against fp32 hold on an AMX CPU as well; the
    per-class choices are tested with capabilities of their own (tests/models/test_precision.py), and
    this machine's own default path in tests/embed/test_cpu_paths.py."""
    from protkit.models.cpu import FLAGS_ENV, this_cpu

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FLAGS_ENV, TEST_CPU_FLAGS)
        this_cpu.cache_clear()
        yield TEST_CPU_FLAGS
    this_cpu.cache_clear()


SCONTROL_SHIM = """#!/bin/sh
# protkit's tests: the real scontrol while this machine's SLURM controller runs (the SLURM test's cluster);
# otherwise fail at once instead of waiting ~9 s for a controller that is not there.
if [ -s /run/slurmctld.pid ] && kill -0 "$(cat /run/slurmctld.pid)" 2>/dev/null; then
  for real in /usr/bin/scontrol /usr/local/bin/scontrol; do [ -x "$real" ] && exec "$real" "$@"; done
fi
echo "scontrol: no SLURM controller is running" >&2
exit 1
"""


@pytest.fixture(scope="session", autouse=True)
def no_wait_for_a_stopped_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every snakemake run imports the SLURM executor plugin, which asks ``scontrol show config`` for
    MinJobAge; with SLURM installed but stopped (after the SLURM test's teardown) that waits ~9 s per run.
    A shim first on PATH answers at once unless the controller runs."""
    shim = tmp_path_factory.mktemp("scontrol-shim")
    (shim / "scontrol").write_text(SCONTROL_SHIM)
    (shim / "scontrol").chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{shim}:{os.environ.get('PATH', '')}")
        yield


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of tiny models (``pytestmark = pytest.mark.usefixtures(...)``):
    on a shared, loaded 2-core machine it is many times faster than several."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (holds requirements/, envs/, protkit/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real DeepLoc FASTA files); the test is skipped when it is absent."""
    fastas = sorted(SHARED_DATA.glob("*.fasta")) if SHARED_DATA.is_dir() else []
    if not fastas:
        pytest.skip(f"real protein data absent: {SHARED_DATA} has no *.fasta files")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_fastas(shared_data: Path) -> list[Path]:
    """The ``*.fasta`` files of ``../shared/data``, sorted by name."""
    return sorted(shared_data.glob("*.fasta"))


@pytest.fixture(scope="session")
def shared_records(shared_fastas: list[Path]) -> list[FastaRecord]:
    """Every record of every ``../shared/data/*.fasta`` file, in file order (read once)."""
    from protkit.sequences.fasta import read_fasta

    return [record for path in shared_fastas for record in read_fasta(path)]


HubCache = Callable[[str, dict[str, Path]], Path]


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubCache:
    """An offline Hugging Face Hub whose cache is a temporary directory.

    Returns ``add(repo_id, {path_in_repo: local_file}) -> snapshot_dir``, which lays the files out
    as huggingface_hub does (``models--org--name/snapshots/<commit>/...`` plus ``refs/main``).
    Both the environment variables and ``huggingface_hub.constants`` are patched, because
    huggingface_hub reads ``HF_HUB_OFFLINE``/``HF_HUB_CACHE`` once, at import time.
    """
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def add(repo_id: str, files: dict[str, Path]) -> Path:
        commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex revision
        repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo_dir / "snapshots" / commit
        for path_in_repo, source in files.items():
            target = snapshot / path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
        return snapshot

    return add




@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random tiny student (``TINY_STUDENT``) with its int8 artifact in ``int8/``."""
    import torch

    from protkit.models.prothash.config import ProtHashConfig
    from protkit.models.prothash.model import ProtHash
    from protkit.quantize import quantize_pretrained

    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    ProtHash(ProtHashConfig(**TINY_STUDENT)).save_pretrained(directory)
    quantize_pretrained(directory, directory / "int8")
    return directory
