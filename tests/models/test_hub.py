"""The Hub without a network: a cached file loads, an uncached one fails in seconds (not after
huggingface_hub's half minute of retries), with one error line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protkit.models.esmc.weights import resolve_weights
from protkit.models.hub import HubUnreachable, hub_fetch

UNREACHABLE = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # connection refused


def without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hub_constants

    for name, value in UNREACHABLE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def test_an_uncached_preset_fails_in_seconds_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    without_network(monkeypatch, tmp_path)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"esmc_300m.*127\.0\.0\.1:9 cannot be reached.*hf download"):
        resolve_weights("esmc_300m")
    assert time.perf_counter() - start < 4.0


def test_hf_hub_offline_fails_at_once_naming_it(offline_hub) -> None:
    from huggingface_hub import hf_hub_download

    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE is set"):
        hub_fetch(hf_hub_download, repo_id="EvolutionaryScale/esmc-300m-2024-12", filename="absent.pth")


def test_a_cached_file_needs_no_network(offline_hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    (tmp_path / "w.pth").write_bytes(b"weights")
    snapshot = offline_hub("org/model", {"w.pth": tmp_path / "w.pth"})
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # online, but the Hub is unreachable
    for name, value in UNREACHABLE.items():
        monkeypatch.setenv(name, value)
    assert hub_fetch(hf_hub_download, repo_id="org/model", filename="w.pth").resolve() == \
        (snapshot / "w.pth").resolve()


def test_embed_with_an_unreachable_hub_prints_one_error_line(tmp_path: Path) -> None:
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    env = {**os.environ, **UNREACHABLE, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "protkit.cli.main", "embed", "--model", "esmc_300m", "--input",
                           str(fasta), "--output", str(tmp_path / "out.parquet")], capture_output=True, text=True,
                          env=env, timeout=120)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line
             and "torchao" not in line and "_pytree" not in line]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("protkit: error: ESMC weights")
    assert "Retrying" not in done.stderr and seconds < 15  # start-up included; the Hub part takes < 4 s
    assert not (tmp_path / "out.parquet").exists()
