"""protkit.quantize: torchao int8 quantization, size on disk, save/load with weights_only in a
fresh process, and agreement with the fp32 model on real sequences."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from protkit.io.digests import file_sha256
from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.models.prothash.int8 import (
    METHODS, load_quantized, quantization_method, quantize_model, read_quantization_info, save_quantized,
)
from protkit.models.prothash.model import ProtHash
from protkit.quantize import quantize_pretrained
from protkit.sequences.tokenize import encode_batch

TINY = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64, context_length=512)


def seeded(config: ProtHashConfig, seed: int = 0) -> ProtHash:
    torch.manual_seed(seed)
    return ProtHash(config).eval()


def teacher_space(model: ProtHash, sequences: list[str], max_length: int = 512) -> torch.Tensor:
    batch = encode_batch(sequences, max_length)
    with torch.no_grad():
        return model.embed_teacher(batch.input_ids, batch.attention_mask, "mean")  # (B, D)


@pytest.fixture(scope="module")
def real_sequences(shared_records) -> list[str]:
    """12 real DeepLoc proteins spread over the length range."""
    ordered = sorted(shared_records, key=lambda r: len(r.sequence))
    step = len(ordered) // 12
    return [ordered[i * step].sequence for i in range(12)]


@pytest.fixture(scope="module")
def preset_model_and_reference(real_sequences) -> tuple[ProtHash, torch.Tensor]:
    """A random-init ProtHash-V2-384-Tiny and its fp32 vectors of ``real_sequences``."""
    model = seeded(PRESETS["ProtHash-V2-384-Tiny"])
    return model, teacher_space(model, real_sequences, max_length=256)


@pytest.mark.parametrize("method", METHODS)
def test_quantize_model_int8_linears_and_leaves_input_alone(method):
    from torchao.quantization import Int8Tensor

    model = seeded(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_model(model, method)
    linears = {n: m for n, m in quantized.named_modules() if isinstance(m, torch.nn.Linear)}
    assert len(linears) == TINY.n_layers * 6 + 1  # q, k, v, out, ff1, ff2 per block + adapter
    assert all(isinstance(m.weight, Int8Tensor) and m.weight.qdata.dtype == torch.int8 for m in linears.values())
    assert type(quantized.token_embeddings.weight) is torch.nn.Parameter
    assert quantization_method(quantized) == method and quantization_method(model) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", METHODS)
def test_int8_agrees_with_fp32_on_real_sequences(method, real_sequences, preset_model_and_reference):
    model, ref = preset_model_and_reference
    got = teacher_space(quantize_model(model, method), real_sequences, max_length=256)
    cosine = torch.nn.functional.cosine_similarity(got, ref)  # (B,)
    assert cosine.min() >= 0.99, f"{method}: min cosine {cosine.min():.5f}"
    assert not torch.equal(got, ref)


@pytest.mark.parametrize("preset", ["ProtHash-V2-384-Tiny", "ProtHash-384-Tiny"])
def test_artifact_at_most_35_percent_of_fp32(preset, tmp_path):
    seeded(PRESETS[preset]).save_pretrained(tmp_path / "fp32")
    quantize_pretrained(tmp_path / "fp32", tmp_path / "int8")
    fp32_bytes = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    int8_bytes = (tmp_path / "int8" / "model.pt").stat().st_size
    assert int8_bytes <= 0.35 * fp32_bytes, f"{preset}: {int8_bytes / fp32_bytes:.3f} of fp32"
    info = read_quantization_info(tmp_path / "int8")
    assert info["size_ratio"] == pytest.approx(int8_bytes / fp32_bytes)
    assert info["source_weights"]["sha256"] == file_sha256(tmp_path / "fp32" / "model.safetensors")


def test_quantization_json(tmp_path):
    import torchao

    save_quantized(quantize_model(seeded(TINY), "int8_weight_only"), tmp_path)
    info = json.loads((tmp_path / "quantization.json").read_text())
    assert (info["method"], info["torchao_version"]) == ("int8_weight_only", torchao.__version__)
    assert info["weights_sha256"] == file_sha256(tmp_path / "model.pt")
    assert "adapter" in info["quantized"] and "token_embeddings.weight" in info["fp16_tensors"]
    assert json.loads((tmp_path / "config.json").read_text()) == TINY.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.pt", "quantization.json"]


LOAD_SCRIPT = """
import sys, numpy as np, torch
from protkit.models.prothash.int8 import load_quantized
from protkit.sequences.tokenize import encode_batch
model = load_quantized(sys.argv[1])
batch = encode_batch(sys.argv[3].split(","))
with torch.no_grad():
    np.save(sys.argv[2], model.embed_teacher(batch.input_ids, batch.attention_mask, "cls").numpy())
"""


@pytest.mark.parametrize("config", [TINY, ProtHashConfig(**{**TINY.to_dict(), "positions": "absolute"})],
                         ids=["rotary", "absolute"])
def test_load_in_fresh_process_gives_identical_outputs(config, tmp_path):
    sequences = ["MKTAYIAKQRQISFVKSHFSRQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "GAVLIMFWP"]
    quantized = quantize_model(seeded(config), "int8_dynamic")
    save_quantized(quantized, tmp_path / "int8")
    batch = encode_batch(sequences)
    with torch.no_grad():
        want = quantized.embed_teacher(batch.input_ids, batch.attention_mask, "cls").numpy()
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "int8"), str(tmp_path / "out.npy"), ",".join(sequences)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)


def test_load_refuses_pickled_objects(tmp_path):
    import argparse

    save_quantized(quantize_model(seeded(TINY)), tmp_path)
    state = load_quantized(tmp_path).state_dict()
    torch.save({**state, "evil": argparse.Namespace(x=1)}, tmp_path / "model.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_quantized(tmp_path)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="quantize.method must be one of int8_dynamic, int8_weight_only"):
        quantize_model(seeded(TINY), "int4")
    with pytest.raises(ValueError, match="needs a model from quantize_model"):
        save_quantized(seeded(TINY), tmp_path)
    with pytest.raises(FileNotFoundError, match="quantization.json missing"):
        load_quantized(tmp_path)
