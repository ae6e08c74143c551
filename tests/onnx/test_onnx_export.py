"""protkit.onnx.export / onnx_runtime: onnxruntime on the CPU matches torch fp32 in padded batches of
varied shape, padding does not leak, metadata round-trips, int8 keeps cosine >= 0.999, bad files
give errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import protkit
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.onnx.export import OUTPUTS, OnnxExportError, export_onnx, quantize_onnx
from protkit.onnx.session import OnnxModelError, OrtStudent, read_onnx_metadata
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.pooling import pool
from protkit.sequences.tokenize import encode_one, pad_batch

TINY = {"d_model": 32, "q_heads": 4, "kv_heads": 2, "n_layers": 2, "teacher_dim": 64, "context_length": 256}
SHA = "ab" * 32


def tiny_model(seed: int = 0, **changes) -> ProtHash:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProtHash(ProtHashConfig(**{**TINY, **changes})).eval()


@pytest.fixture(scope="module")
def tokens(shared_records) -> list[list[int]]:
    """64 real proteins of varied length (truncated to the tiny context), plus one without residues."""
    records = sorted(shared_records[:400], key=lambda r: len(r.sequence))[::6][:64]
    return [encode_one(r.sequence, max_length=TINY["context_length"]) for r in records] + [encode_one("")]


@pytest.fixture(scope="module", params=["rotary", "absolute"])
def exported(request, tmp_path_factory) -> tuple[ProtHash, Path]:
    """A tiny model (rotary, or absolute positions with an adapter bias) and its fp32 export."""
    extra = {"positions": "absolute", "adapter_bias": True} if request.param == "absolute" else {}
    model = tiny_model(**extra)
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", weights_sha256=SHA)


def torch_pooled(model: ProtHash, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, np.ndarray]:
    """The six outputs computed the torch way: adapter on every token, then pooling."""
    with torch.inference_mode():
        native = model(input_ids, attention_mask)  # (B, L, d_model)
        teacher = model.adapter(native)  # (B, L, teacher_dim)
        out = {}
        for name in ("cls", "mean", "max"):
            out[name] = pool(teacher, input_ids, attention_mask, name).numpy()
            out[f"{name}_native"] = pool(native, input_ids, attention_mask, name).numpy()
    return out


def run_batches(forward, tokens: list[list[int]], max_tokens: int) -> dict[str, np.ndarray]:
    """``forward(batch) -> {name: (B, D)}`` over length-sorted batches, rows back in input order."""
    out: dict[str, np.ndarray] = {}
    for rows in token_budget_batches([len(t) for t in tokens], max_tokens):
        for name, value in forward(pad_batch([tokens[i] for i in rows])).items():
            out.setdefault(name, np.zeros((len(tokens), value.shape[1]), np.float32))[rows] = value
    return out


def rel_l2(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnxruntime_matches_torch_in_padded_batches(exported, tokens) -> None:
    """Batches of varied B and L (dynamic axes); every output within relative L2 1e-4."""
    model, path = exported
    student = OrtStudent(path, threads=1)
    got = run_batches(lambda b: student.run(b.input_ids.numpy(), b.attention_mask.numpy(), OUTPUTS), tokens, 1500)
    expected = run_batches(lambda b: torch_pooled(model, b.input_ids, b.attention_mask), tokens, 1500)
    shapes = {(len(rows), max(len(tokens[i]) for i in rows)) for rows in token_budget_batches([len(t) for t in tokens], 1500)}
    assert len({b for b, _ in shapes}) > 2 and len({L for _, L in shapes}) > 2, shapes
    for name in OUTPUTS:
        width = model.config.teacher_dim if name in ("cls", "mean", "max") else model.config.d_model
        assert got[name].shape == (len(tokens), width) and got[name].dtype == np.float32
        assert rel_l2(got[name][:-1], expected[name][:-1]) <= 1e-4, name
    # The last sequence has no residues: mean is 0 and max the float32 minimum, as in protkit.sequences.pooling.
    for name in ("mean", "mean_native", "max", "max_native"):
        assert np.array_equal(got[name][-1], expected[name][-1]), name


def test_protein_alone_equals_padded_batch(exported, tokens) -> None:
    _, path = exported
    student = OrtStudent(path, threads=1)
    picked = [tokens[0], tokens[30], tokens[63]]  # short, medium, long: the first two are padded
    batch = pad_batch(picked)
    together = student.run(batch.input_ids.numpy(), batch.attention_mask.numpy().astype(bool), OUTPUTS)
    for row, ids in enumerate(picked):
        alone = student.run(np.array([ids]), np.ones((1, len(ids)), np.int64), OUTPUTS)
        for name in OUTPUTS:
            assert rel_l2(together[name][row], alone[name][0]) <= 1e-5, (row, name)


def test_metadata_round_trips(exported) -> None:
    model, path = exported
    meta = read_onnx_metadata(path)
    assert meta["config"] == model.config.to_dict()
    assert ProtHashConfig.from_dict(meta["config"]) == model.config
    assert meta["weights_sha256"] == SHA and meta["version"] == protkit.__version__
    assert meta["outputs"] == list(OUTPUTS) and meta["precision"] == "fp32" and meta["quantization"] is None
    assert meta["inputs"] == {"input_ids": "int64", "attention_mask": "int64"}
    assert OrtStudent(path).outputs == OUTPUTS


def test_int8_keeps_cosine(exported, tokens, tmp_path) -> None:
    model, path = exported
    int8 = quantize_onnx(path, tmp_path / "int8.onnx")
    meta = read_onnx_metadata(int8)
    assert meta["precision"] == "int8_dynamic" and meta["weights_sha256"] == SHA
    assert meta["config"] == model.config.to_dict() and meta["quantization"]["per_channel"]
    assert int8.stat().st_size < 0.6 * path.stat().st_size
    student = OrtStudent(int8, threads=1)
    real = tokens[:-1]
    got = run_batches(lambda b: student.run(b.input_ids.numpy(), b.attention_mask.numpy(), ("cls", "mean")), real, 1500)
    expected = run_batches(lambda b: torch_pooled(model, b.input_ids, b.attention_mask), real, 1500)
    for name in ("cls", "mean"):
        cos = cosines(got[name], expected[name])
        assert cos.mean() >= 0.999 and cos.min() >= 0.999, (name, cos.mean(), cos.min())
    with pytest.raises(OnnxExportError, match="already quantized"):
        quantize_onnx(int8, tmp_path / "again.onnx")


def test_outputs_subset_and_errors(tmp_path) -> None:
    model = tiny_model(n_layers=1)
    path = export_onnx(model, tmp_path / "sub.onnx", outputs=("mean", "cls_native"))
    student = OrtStudent(path)
    assert student.outputs == ("mean", "cls_native") and read_onnx_metadata(path)["weights_sha256"] is None
    batch = pad_batch([encode_one("MKTAYIAKQR"), encode_one("MSEQ")])
    out = student.run(batch.input_ids.numpy(), batch.attention_mask.numpy(), ("mean",))
    assert list(out) == ["mean"] and out["mean"].shape == (2, TINY["teacher_dim"])
    with pytest.raises(ValueError, match="no output max"):
        student.run(batch.input_ids.numpy(), batch.attention_mask.numpy(), ("max",))
    with pytest.raises(ValueError, match="must both be"):
        student.run(batch.input_ids.numpy(), batch.attention_mask.numpy()[:, :3])
    too_long = np.zeros((1, TINY["context_length"] + 1), np.int64)
    with pytest.raises(ValueError, match="exceeds the context length"):
        student.run(too_long, np.ones_like(too_long))
    with pytest.raises(OnnxExportError, match="outputs must be"):
        export_onnx(model, tmp_path / "bad.onnx", outputs=("mean", "median"))
    assert not (tmp_path / "bad.onnx").exists()


def test_bad_files_name_the_file(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not an onnx model at all" * 10)
    for load in (OrtStudent, read_onnx_metadata):
        with pytest.raises(OnnxModelError, match="corrupt.onnx"):
            load(corrupt)
    missing = tmp_path / "missing.onnx"
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OrtStudent(missing)
