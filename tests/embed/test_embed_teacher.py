"""``protkit embed`` with the ESMC teacher (ESM++ ``embed_dataset`` parity): the same vectors as the
teacher cache, through a weights file and through the Hub name offline; precisions; max pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from protkit.cli.main import main
from protkit.embed.embedder import EmbedError
from protkit.embed.loading import load_embedder
from protkit.embed.residues import read_residues
from protkit.embed.run import embed_fasta
from protkit.io.digests import file_sha256
from protkit.io.metadata import read_protkit_metadata
from protkit.models.esmc.model import ESMCConfig
from protkit.models.esmc.weights import HUB_WEIGHTS, random_esmc, save_weights
from protkit.sequences.fasta import write_fasta
from protkit.sequences.tokenize import encode_batch
from protkit.teacher.build import build_cache
from protkit.teacher.read import load_pooled

TEACHER = ESMCConfig(d_model=128, n_heads=2, n_layers=2)  # 64-wide heads, as released: shapes imply the config
MAX_LENGTH = 300


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    save_weights(random_esmc(TEACHER, seed=3, qk_gain=4.0), path)
    return path


@pytest.fixture(scope="module")
def proteins(shared_records) -> list[tuple[str, str]]:
    """40 real DeepLoc proteins of varied length (some over MAX_LENGTH)."""
    picked = shared_records[:400:10]
    return [(r.id, r.sequence) for r in picked]


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory, proteins) -> Path:
    path = tmp_path_factory.mktemp("fasta") / "deeploc40.fasta"
    write_fasta(proteins, path)
    return path


def column(path: Path, name: str) -> np.ndarray:
    return np.stack(pq.read_table(path).column(name).to_numpy(zero_copy_only=False)).astype(np.float32)


def rel_errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)


def test_teacher_embedding_equals_the_teacher_cache(weights, proteins, fasta, tmp_path):
    table = pd.DataFrame({"id": [p[0] for p in proteins], "sequence": [p[1] for p in proteins],
                          "split": "train"})
    teacher = random_esmc(TEACHER, seed=3, qk_gain=4.0)
    build_cache(teacher, table, tmp_path / "cache", weights_sha256=file_sha256(weights), teacher_name="t",
                dataset="d", max_length=MAX_LENGTH, max_tokens_per_batch=4096, store_dtype="fp32", shard_size=16)
    cached = load_pooled(tmp_path / "cache")

    embedder = load_embedder(weights, device="cpu")
    assert (embedder.kind, embedder.dim, embedder.fingerprint) == ("teacher", 128, file_sha256(weights))
    out = embed_fasta(embedder, fasta, tmp_path / "e.parquet", poolings=("mean", "cls"), max_length=MAX_LENGTH,
                      max_tokens=4096)
    assert pq.read_table(out).column("id").to_pylist() == cached.ids
    for pooling in ("mean", "cls"):
        assert rel_errors(column(out, pooling), cached.vectors[pooling]).max() <= 1e-5
    meta = read_protkit_metadata(out)
    assert (meta["model_kind"], meta["space"], meta["model_fingerprint"]) == ("teacher", "model", file_sha256(weights))
    assert meta["n_truncated"] == sum(len(s) > MAX_LENGTH - 2 for _, s in proteins) > 0


def test_teacher_by_hub_name_offline_with_max_and_per_residue(offline_hub, weights, proteins, fasta, tmp_path):
    hub = HUB_WEIGHTS["esmc_300m"]
    offline_hub(hub.repo_id, {hub.filename: weights})
    out, res = tmp_path / "e.parquet", tmp_path / "r.parquet"
    argv = ["-q", "embed", "--model", "esmc_300m", "--input", str(fasta), "--output", str(out), "--device", "cpu",
            "--pooling", "cls,mean,max", "--max-length", str(MAX_LENGTH), "--per-residue", str(res), "--fp16"]
    assert main(argv) == 0
    teacher = random_esmc(TEACHER, seed=3, qk_gain=4.0)
    got = dict(read_residues(res))
    for row, (rid, sequence) in enumerate(proteins[:8]):
        batch = encode_batch([sequence], MAX_LENGTH)
        with torch.no_grad():
            hidden = teacher(batch.input_ids, batch.attention_mask).last_hidden_state[0].numpy()  # (L, D)
        residues = hidden[1:-1]
        np.testing.assert_allclose(got[rid], residues, rtol=2e-3, atol=2e-3)  # stored as fp16
        np.testing.assert_allclose(column(out, "max")[row], residues.max(0), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(column(out, "cls")[row], hidden[0], rtol=2e-3, atol=2e-3)
    assert read_protkit_metadata(out)["model"] == "esmc_300m"


def test_teacher_precisions_agree(weights, fasta, tmp_path):
    fp32 = embed_fasta(load_embedder(weights, device="cpu"), fasta, tmp_path / "a.parquet", max_length=MAX_LENGTH)
    bf16 = load_embedder(weights, device="cpu", precision="bf16")
    half = embed_fasta(bf16, fasta, tmp_path / "b.parquet", max_length=MAX_LENGTH)
    a, b = column(fp32, "mean"), column(half, "mean")
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99 and read_protkit_metadata(half)["precision"] == "bf16"


def test_teacher_refuses_student_only_options(weights):
    with pytest.raises(EmbedError, match="--int8 is for ProtHash students"):
        load_embedder(weights, int8=True, device="cpu")
    with pytest.raises(EmbedError, match="onnxruntime backend runs ProtHash students only"):
        load_embedder(weights, backend="onnxruntime", device="cpu")
