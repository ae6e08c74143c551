"""protkit.models.esmc.weights: loading ESMC weights from files, Hub-like folders and the Hub cache."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch

from protkit.io.digests import file_sha256
from protkit.models.esmc.model import ESMC, ESMC_PRESETS, ESMCConfig
from protkit.models.esmc.weights import (
    HUB_WEIGHTS, infer_config, load_esmc, load_state_dict, random_esmc, resolve_weights, save_weights,
)
from protkit.sequences.tokenize import encode_batch

TINY = ESMCConfig(d_model=128, n_heads=2, n_layers=2)  # 64-wide heads, as inferred from shapes
SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MSEQ", "ACDEFGHIKLMNPQRSTVWY"]


@pytest.fixture(scope="module")
def tiny() -> ESMC:
    model = random_esmc(TINY, seed=7)
    with torch.no_grad():  # non-trivial LayerNorm parameters, so a loader that skips them fails
        for parameter in model.parameters():
            if parameter.ndim == 1:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    return model


def outputs(model: ESMC) -> torch.Tensor:
    batch = encode_batch(SEQUENCES)
    with torch.no_grad():
        return model(batch.input_ids, batch.attention_mask).last_hidden_state  # (B, L, D)


def assert_same_model(loaded: ESMC, saved: ESMC) -> None:
    assert loaded.config == saved.config
    assert not loaded.training
    assert torch.equal(outputs(loaded), outputs(saved))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_local_file(tmp_path: Path, tiny: ESMC, suffix: str) -> None:
    path = tmp_path / f"weights{suffix}"
    save_weights(tiny, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic write left no temporary file
    assert_same_model(load_esmc(path), tiny)
    assert_same_model(load_esmc(str(path)), tiny)


def test_load_hub_like_directory(tmp_path: Path, tiny: ESMC) -> None:
    weights = tmp_path / "esmc-300m-2024-12" / "data" / "weights" / "esmc_300m_2024_12_v0.pth"
    save_weights(tiny, weights)
    (tmp_path / "esmc-300m-2024-12" / "README.md").write_text("not weights")
    assert resolve_weights(tmp_path / "esmc-300m-2024-12") == weights
    assert_same_model(load_esmc(tmp_path / "esmc-300m-2024-12"), tiny)


def test_load_directory_with_one_safetensors(tmp_path: Path, tiny: ESMC) -> None:
    save_weights(tiny, tmp_path / "model.safetensors")
    assert_same_model(load_esmc(tmp_path), tiny)


def test_directory_with_several_weight_files_is_ambiguous(tmp_path: Path, tiny: ESMC) -> None:
    save_weights(tiny, tmp_path / "a.safetensors")
    save_weights(tiny, tmp_path / "b.safetensors")
    with pytest.raises(FileNotFoundError, match=r"several weight files.*a\.safetensors.*b\.safetensors"):
        load_esmc(tmp_path)


def test_missing_weights_are_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no ESMC weights"):
        load_esmc(tmp_path)
    with pytest.raises(FileNotFoundError, match="not one of esmc_300m, esmc_600m"):
        load_esmc(tmp_path / "nowhere.pth")


def test_load_dtype_and_explicit_config(tmp_path: Path, tiny: ESMC) -> None:
    save_weights(tiny, tmp_path / "w.pth")
    model = load_esmc(tmp_path / "w.pth", dtype=torch.bfloat16, config=TINY)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_esmc(tmp_path / "w.pth", config=ESMCConfig(d_model=64, n_heads=1, n_layers=2))


def test_hub_name_through_offline_cache(offline_hub, tmp_path: Path, tiny: ESMC) -> None:
    """``load_esmc("esmc_300m")`` goes through huggingface_hub; with HF_HUB_OFFLINE=1 it reads the
    cache (here a fake one holding the tiny model)."""
    hub = HUB_WEIGHTS["esmc_300m"]
    assert hub.filename == "data/weights/esmc_300m_2024_12_v0.pth"
    save_weights(tiny, tmp_path / "tiny.pth")
    snapshot = offline_hub(hub.repo_id, {hub.filename: tmp_path / "tiny.pth"})
    assert snapshot.parts[-3:-1] == ("models--EvolutionaryScale--esmc-300m-2024-12", "snapshots")
    assert resolve_weights("esmc_300m") == snapshot / hub.filename
    assert_same_model(load_esmc("esmc_300m"), tiny)


def test_hub_name_missing_from_offline_cache(offline_hub) -> None:
    with pytest.raises(FileNotFoundError, match="esmc_600m.*not in the Hugging Face cache.*hf download"):
        load_esmc("esmc_600m")


class _Exploit:
    """Unpickling this would create a directory: a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickled_objects_are_refused(tmp_path: Path, tiny: ESMC) -> None:
    marker = tmp_path / "code-was-run"
    state = dict(tiny.state_dict())
    state["extra"] = _Exploit(marker)
    torch.save(state, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_esmc(tmp_path / "evil.pth")
    assert not marker.exists()


def test_infer_config_from_shapes(tiny: ESMC) -> None:
    assert infer_config(tiny.state_dict()) == TINY
    for name, preset in ESMC_PRESETS.items():
        with torch.device("meta"):
            state = ESMC(preset).state_dict()
        assert infer_config(state) is preset, name


def test_state_dict_round_trip_is_exact(tmp_path: Path, tiny: ESMC) -> None:
    for suffix in (".pth", ".safetensors"):
        save_weights(tiny, tmp_path / f"w{suffix}")
        loaded = load_state_dict(tmp_path / f"w{suffix}")
        assert loaded.keys() == tiny.state_dict().keys()
        assert all(torch.equal(loaded[k], v) for k, v in tiny.state_dict().items())


def test_random_esmc_is_seeded_and_leaves_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    a, b, c = random_esmc(TINY, seed=1), random_esmc(TINY, seed=1), random_esmc(TINY, seed=2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(outputs(a), outputs(b))
    assert not torch.equal(a.embed.weight, c.embed.weight)


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = os.urandom(3 << 20)  # spans several read chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()
