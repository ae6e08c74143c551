"""protkit.embed: FASTA -> parquet in FASTA order, duplicates, over-long policies, fp16, shards,
atomicity, int8 and model loading."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from protkit.embed import (
    EmbedError,
    embed_fasta,
    embed_shard,
    gather_shards,
    load_model,
    read_metadata,
    shard_records,
)
from protkit.fasta import write_fasta
from protkit.models.esmc_weights import file_sha256
from protkit.models.prothash import ProtHash, ProtHashConfig
from protkit.tokenize import encode_batch

from conftest import TINY_STUDENT

TINY = ProtHashConfig(**TINY_STUDENT)
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def random_protein(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(AMINO) for _ in range(length))


@pytest.fixture(scope="module")
def fp32(model_dir: Path):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def records() -> list[tuple[str, str]]:
    """30 proteins of 5..400 residues, with two exact duplicates and one lower-case/stop-codon twin."""
    rng = random.Random(1)
    recs = [(f"p{i:02d}", random_protein(rng, rng.randint(5, 400))) for i in range(30)]
    recs[7] = ("dup_of_p03", recs[3][1])
    recs[20] = ("dup2_of_p03", recs[3][1])
    recs[25] = ("twin_of_p10", recs[10][1].lower() + "*")
    return recs


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory, records) -> Path:
    path = tmp_path_factory.mktemp("fasta") / "proteins.fasta"
    write_fasta(records, path)
    return path


def alone(model: ProtHash, sequence: str, pooling: str, max_length: int | None = None) -> np.ndarray:
    """The teacher-space vector of one sequence embedded on its own.  # (D,)"""
    batch = encode_batch([sequence], max_length)
    with torch.no_grad():
        return model.embed_teacher(batch.input_ids, batch.attention_mask, pooling)[0].numpy()


def vectors(path: Path, pooling: str) -> np.ndarray:
    return np.stack(pq.read_table(path).column(pooling).to_numpy(zero_copy_only=False)).astype(np.float32)


def test_rows_in_fasta_order_equal_one_at_a_time(fp32, fasta, records, tmp_path):
    out = embed_fasta(fp32, fasta, tmp_path / "e.parquet", poolings=("mean", "cls"), max_tokens=1500)
    table = pq.read_table(out)
    assert table.column_names == ["id", "length", "truncated", "mean", "cls"]
    assert table.column("id").to_pylist() == [rid for rid, _ in records]
    assert table.column("length").to_pylist() == [len(s.rstrip("*")) for _, s in records]
    assert not any(table.column("truncated").to_pylist())
    for pooling in ("mean", "cls"):
        got = vectors(out, pooling)
        assert got.shape == (len(records), TINY.teacher_dim)
        want = np.stack([alone(fp32.model, s.upper().rstrip("*"), pooling) for _, s in records])
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(vectors(out, "mean")[0], vectors(out, "mean")[1])


def test_metadata_identifies_model_and_settings(fp32, model_dir, fasta, tmp_path):
    out = embed_fasta(fp32, fasta, tmp_path / "e.parquet", poolings=("cls",), metadata={"run": "x"})
    meta = read_metadata(out)
    assert meta["model_fingerprint"] == file_sha256(model_dir / "model.safetensors")
    assert (meta["poolings"], meta["int8"], meta["quantization"]) == (["cls"], False, None)
    assert (meta["dim"], meta["max_length"], meta["run"]) == (64, TINY.context_length, "x")
    assert meta["protkit_version"] == __import__("protkit").__version__


def test_duplicates_embedded_once_but_repeated_in_order(fp32, fasta, records, tmp_path):
    rows_seen: list[int] = []
    hook = fp32.model.register_forward_hook(lambda mod, args, out: rows_seen.append(args[0].shape[0]))
    try:
        out = embed_fasta(fp32, fasta, tmp_path / "e.parquet", max_tokens=2000)
    finally:
        hook.remove()
    assert sum(rows_seen) == len(records) - 3  # p03 twice more, p10's lower-case twin
    got = vectors(out, "mean")
    np.testing.assert_array_equal(got[7], got[3])
    np.testing.assert_array_equal(got[20], got[3])
    np.testing.assert_array_equal(got[25], got[10])
    assert read_metadata(out)["n_unique"] == len(records) - 3


def test_overlength_truncate_drop_error(fp32, tmp_path):
    rng = random.Random(2)
    recs = [("short", random_protein(rng, 20)), ("long", random_protein(rng, 60)), ("mid", random_protein(rng, 30))]
    path = tmp_path / "x.fasta"
    write_fasta(recs, path)

    out = embed_fasta(fp32, path, tmp_path / "t.parquet", max_length=42, overlength="truncate")
    table = pq.read_table(out)
    assert table.column("truncated").to_pylist() == [False, True, False]
    assert table.column("length").to_pylist() == [20, 60, 30]
    np.testing.assert_allclose(vectors(out, "mean")[1], alone(fp32.model, recs[1][1][:40], "mean"), atol=1e-5)

    out = embed_fasta(fp32, path, tmp_path / "d.parquet", max_length=42, overlength="drop")
    assert pq.read_table(out).column("id").to_pylist() == ["short", "mid"]
    assert read_metadata(out)["dropped"] == [{"id": "long", "line": 3, "residues": 60}]

    with pytest.raises(EmbedError, match=r"x\.fasta line 3, id long: 60 residues .* exceed max_length 42"):
        embed_fasta(fp32, path, tmp_path / "e.parquet", max_length=42, overlength="error")
    assert not (tmp_path / "e.parquet").exists()
    with pytest.raises(EmbedError, match="context length 512"):
        embed_fasta(fp32, path, tmp_path / "e.parquet", max_length=600)


def test_fp16_storage(fp32, fasta, tmp_path):
    full = embed_fasta(fp32, fasta, tmp_path / "a.parquet", store_dtype="fp32")
    half = embed_fasta(fp32, fasta, tmp_path / "b.parquet", store_dtype="fp16")
    assert str(pq.read_schema(half).field("mean").type.value_type) == "halffloat"
    assert str(pq.read_schema(full).field("mean").type.value_type) == "float"
    np.testing.assert_allclose(vectors(half, "mean"), vectors(full, "mean"), rtol=2e-3, atol=1e-4)
    assert half.stat().st_size < full.stat().st_size


def test_shards_gather_to_the_unsharded_output(fp32, fasta, records, tmp_path):
    whole = embed_fasta(fp32, fasta, tmp_path / "whole.parquet", poolings=("mean", "cls"))
    assert [i for i, _ in shard_records(fasta, 1, 3)] == list(range(1, len(records), 3))
    shards = [embed_shard(fp32, fasta, tmp_path / "shards", i, 3, poolings=("mean", "cls")) for i in range(3)]
    assert [p.name for p in shards] == [f"shard-{i}-of-3.parquet" for i in range(3)]
    assert pq.read_table(shards[1]).column("index").to_pylist() == list(range(1, len(records), 3))
    out = gather_shards(shards[::-1], tmp_path / "gathered.parquet")
    assert pq.read_table(out).column_names == pq.read_table(whole).column_names
    assert pq.read_table(out).column("id").to_pylist() == pq.read_table(whole).column("id").to_pylist()
    for pooling in ("mean", "cls"):
        np.testing.assert_allclose(vectors(out, pooling), vectors(whole, pooling), atol=1e-5)
    meta = read_metadata(out)
    assert (meta["n_rows"], meta["shards"], "shard" in meta) == (len(records), 3, False)
    with pytest.raises(EmbedError, match=r"expected shards 0\.\.2 of 3 once each, got \[0, 2\]"):
        gather_shards([shards[0], shards[2]], tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_interrupted_run_leaves_no_partial_parquet(fp32, fasta, tmp_path):
    (tmp_path / "out").mkdir()
    calls = []

    def crash(mod, args, out):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash (node preempted)")

    hook = fp32.model.register_forward_hook(crash)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            embed_fasta(fp32, fasta, tmp_path / "out" / "e.parquet", max_tokens=600)
    finally:
        hook.remove()
    assert len(calls) == 2
    assert list((tmp_path / "out").iterdir()) == []  # neither e.parquet nor a temporary file


def test_int8_model(model_dir, fp32, fasta, tmp_path):
    int8 = load_model(model_dir, int8=True)
    assert int8.quantization == "int8_dynamic"
    assert int8.fingerprint == file_sha256(model_dir / "int8" / "model.pt")
    assert load_model(model_dir / "int8").quantization == "int8_dynamic"  # the artifact dir implies int8
    a = vectors(embed_fasta(fp32, fasta, tmp_path / "a.parquet"), "mean")
    out = embed_fasta(int8, fasta, tmp_path / "b.parquet")
    b = vectors(out, "mean")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99 and not np.array_equal(a, b)
    assert read_metadata(out)["int8"] is True


def test_int8_without_artifact_quantizes_on_the_fly(tmp_path, fasta):
    torch.manual_seed(3)
    ProtHash(TINY).save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m", int8=True)
    assert loaded.quantization == "int8_dynamic"
    assert loaded.fingerprint == file_sha256(tmp_path / "m" / "model.safetensors")


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        load_model(tmp_path / "empty")


def test_load_model_from_hub_cache(offline_hub, model_dir):
    offline_hub("someone/prothash-tiny", {
        "config.json": model_dir / "config.json",
        "model.safetensors": model_dir / "model.safetensors",
    })
    loaded = load_model("someone/prothash-tiny")
    assert loaded.source == "someone/prothash-tiny"
    assert loaded.fingerprint == file_sha256(model_dir / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="Hugging Face Hub"):
        load_model("someone/not-there")
