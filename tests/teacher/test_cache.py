"""protkit.teacher.build: teacher cache values, resume after a crash, fingerprints, token targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import protkit
from protkit.data.filter import split_of
from protkit.io.digests import file_sha256
from protkit.models.esmc.model import ESMCConfig
from protkit.models.esmc.weights import random_esmc
from protkit.sequences.tokenize import VOCAB, encode_batch
from protkit.teacher.build import build_cache
from protkit.teacher.layout import CacheError, FingerprintMismatch, cache_fingerprint, part_dir, sequence_parts
from protkit.teacher.loading import teacher_from_config, write_random_teacher
from protkit.teacher.parts import gather_cache_parts
from protkit.teacher.read import load_pooled, load_token_targets

TINY = ESMCConfig(d_model=64, n_heads=1, n_layers=2)
MAX_LENGTH = 40  # tokens, so sequences over 38 residues are truncated
AMINO = list("ACDEFGHIKLMNPQRSTVWY")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def teacher():
    return random_esmc(TINY, seed=0)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(AMINO, int(n))) for n in rng.integers(3, 90, size=37)]
    seqs.append("MKXBZUOLAG")  # rare letters tokenize too
    return pd.DataFrame({
        "id": [f"P{i:03d}" for i in range(len(seqs))],
        "sequence": seqs,
        "split": [split_of(s, "salt", 0.25) for s in seqs],
    })


def build(model, table, out_dir, **overrides) -> dict:
    args = dict(weights_sha256="w" * 64, teacher_name="tiny", dataset="unit", max_length=MAX_LENGTH,
                max_tokens_per_batch=200, shard_size=8, store_dtype="fp32", device="cpu")
    return build_cache(model, table, out_dir, **{**args, **overrides})


def direct(model, sequence: str, max_length: int = MAX_LENGTH) -> torch.Tensor:
    """Last hidden state of one unpadded sequence.  # (L, D)"""
    batch = encode_batch([sequence], max_length)
    with torch.inference_mode():
        return model(batch.input_ids, batch.attention_mask).last_hidden_state[0].float()


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def full_cache(teacher, table, tmp_path_factory) -> Path:
    """An uninterrupted build with per-residue targets."""
    out = tmp_path_factory.mktemp("full")
    build(teacher, table, out, tokens=True)
    return out


# --------------------------------------------------------------------------- values


def test_pooled_vectors_equal_direct_computation(teacher, table, full_cache: Path):
    cached = load_pooled(full_cache)
    assert cached.ids == table["id"].tolist()
    assert cached.splits.tolist() == table["split"].tolist()
    assert cached.vectors["cls"].shape == (len(table), TINY.d_model)
    assert cached.vectors["cls"].dtype == np.float32
    for row, seq in enumerate(table["sequence"]):
        hidden = direct(teacher, seq)  # (L, D), L = min(len, 38) + 2
        assert hidden.shape[0] == min(len(seq), MAX_LENGTH - 2) + 2
        np.testing.assert_allclose(cached.vectors["cls"][row], hidden[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(cached.vectors["mean"][row], hidden[1:-1].mean(0).numpy(), atol=1e-5)
        # residues only: including CLS/EOS gives a clearly different vector
        assert np.abs(cached.vectors["mean"][row] - hidden.mean(0).numpy()).max() > 1e-3


def test_manifest_and_shard_layout(table, full_cache: Path):
    manifest = json.loads((full_cache / "manifest.json").read_text())
    n_shards = -(-len(table) // 8)
    assert manifest["shards"] == [f"pooled-{k:05d}.parquet" for k in range(n_shards)]
    assert manifest["token_shards"] == [f"tokens-{k:05d}.safetensors" for k in range(n_shards)]
    assert (manifest["d_model"], manifest["n_sequences"], manifest["max_length"]) == (64, len(table), MAX_LENGTH)
    assert manifest["poolings"] == ["cls", "mean"] and manifest["tokens"] is True
    assert manifest["fingerprint"] == json.loads((full_cache / "fingerprint.json").read_text())["fingerprint"]
    shard = pq.read_table(full_cache / "pooled-00001.parquet")
    assert shard.column_names == ["id", "split", "cls", "mean"]
    assert shard.schema.field("cls").type == pa.list_(pa.float32(), 64)
    assert shard.column("id").to_pylist() == table["id"].tolist()[8:16]


def test_fp16_storage(teacher, table, full_cache: Path, tmp_path: Path):
    build(teacher, table, tmp_path, store_dtype="fp16")
    assert pq.read_schema(tmp_path / "pooled-00000.parquet").field("mean").type == pa.list_(pa.float16(), 64)
    half, full = load_pooled(tmp_path), load_pooled(full_cache)
    assert half.vectors["mean"].dtype == np.float32
    np.testing.assert_array_equal(half.vectors["mean"], full.vectors["mean"].astype(np.float16).astype(np.float32))
    assert half.manifest["fingerprint"] != full.manifest["fingerprint"]


def test_bf16_teacher_stores_float_vectors(table, full_cache: Path, tmp_path: Path):
    bf16 = random_esmc(TINY, seed=0).to(torch.bfloat16)
    build(bf16, table.head(10), tmp_path)
    cached, reference = load_pooled(tmp_path), load_pooled(full_cache)
    assert cached.vectors["cls"].dtype == np.float32 and np.isfinite(cached.vectors["cls"]).all()
    np.testing.assert_allclose(cached.vectors["mean"], reference.vectors["mean"][:10], atol=0.1)


def test_token_targets_shapes_and_values(teacher, table, full_cache: Path, tmp_path: Path):
    ids = ["P000", "P005", table["id"].iloc[-1]]
    targets = load_token_targets(full_cache, ids)
    assert list(targets) == ids
    for rid, tensor in targets.items():
        seq = table.set_index("id").loc[rid, "sequence"]
        assert tensor.shape == (min(len(seq), MAX_LENGTH - 2), 64)
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, direct(teacher, seq)[1:-1], atol=2e-3, rtol=2e-3)
    with pytest.raises(KeyError, match="no per-residue targets for 1 id"):
        load_token_targets(full_cache, ["P000", "nope"])
    build(teacher, table.head(4), tmp_path)
    with pytest.raises(CacheError, match="built without per-residue targets"):
        load_token_targets(tmp_path, ["P000"])


# --------------------------------------------------------------------------- resume


def test_resume_after_crash_equals_uninterrupted(teacher, table, full_cache: Path, tmp_path: Path, monkeypatch):
    calls = {"n": 0}
    forward = teacher.forward

    def failing_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("simulated crash (CUDA out of memory)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(teacher, "forward", failing_forward)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(teacher, table, tmp_path, tokens=True)
    monkeypatch.undo()

    crashed = files(tmp_path)
    finished = sorted(n for n in crashed if n.startswith("pooled-"))
    assert 1 <= len(finished) < 5
    assert set(crashed) == {"fingerprint.json", *finished, *(n.replace("pooled", "tokens").replace(
        ".parquet", ".safetensors") for n in finished)}  # no manifest, no temporary files
    reference = files(full_cache)
    assert all(crashed[name] == reference[name] for name in crashed if name != "fingerprint.json")
    with pytest.raises(CacheError, match=r"cache incomplete: .*manifest.json does not exist.*rerun teacher_cache"):
        load_pooled(tmp_path)

    embedded = {"rows": 0}

    def counting_forward(input_ids, *args, **kwargs):
        embedded["rows"] += input_ids.shape[0]
        return forward(input_ids, *args, **kwargs)

    monkeypatch.setattr(teacher, "forward", counting_forward)
    build(teacher, table, tmp_path, tokens=True)
    assert files(tmp_path) == reference  # byte for byte
    assert embedded["rows"] == len(table) - 8 * len(finished)  # finished shards were kept


def test_killed_job_leftovers_are_removed(teacher, table, tmp_path: Path):
    build(teacher, table.head(8), tmp_path)
    (tmp_path / ".pooled-00001.parquet.abc123.tmp").write_bytes(b"half a file")
    (tmp_path / "manifest.json").unlink()
    build(teacher, table.head(16), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fingerprint.json", "manifest.json", "pooled-00000.parquet", "pooled-00001.parquet"]


def test_changed_table_recomputes_only_changed_shards(teacher, table, tmp_path: Path):
    out, fresh = tmp_path / "cache", tmp_path / "fresh"
    build(teacher, table, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("pooled-*")}
    changed = table.copy()
    changed.loc[20, "sequence"] = "MKVLAAGIVGWWW"  # row 20 is in shard 2
    build(teacher, changed, out)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("pooled-*")}
    assert [n for n in stamps if after[n] != stamps[n]] == ["pooled-00002.parquet"]
    build(teacher, changed, fresh)
    assert files(out) == files(fresh)

    build(teacher, changed.head(12), out)  # the table shrank: shards 2.. disappear
    assert sorted(p.name for p in out.glob("pooled-*")) == ["pooled-00000.parquet", "pooled-00001.parquet"]
    assert load_pooled(out).ids == changed["id"].tolist()[:12]


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_parts():
    fp, parts = cache_fingerprint("a" * 64, 1024, ("mean", "cls"), "fp16", False)
    assert parts["tokenizer_vocab"] == list(VOCAB) and parts["protkit_version"] == protkit.__version__
    assert parts["poolings"] == ["cls", "mean"]
    assert cache_fingerprint("a" * 64, 1024, ("cls", "mean"), "fp16", False)[0] == fp
    variants = [("b" * 64, 1024, ("cls", "mean"), "fp16", False), ("a" * 64, 512, ("cls", "mean"), "fp16", False),
                ("a" * 64, 1024, ("cls",), "fp16", False), ("a" * 64, 1024, ("cls", "mean"), "fp32", False),
                ("a" * 64, 1024, ("cls", "mean"), "fp16", True)]
    assert len({cache_fingerprint(*v)[0] for v in variants} | {fp}) == 6


def test_fingerprint_mismatch_is_refused(teacher, table, tmp_path: Path):
    first = build(teacher, table.head(10), tmp_path)
    before = files(tmp_path)
    new_fp = cache_fingerprint("w" * 64, 64, ("cls", "mean"), "fp32", False)[0]
    with pytest.raises(FingerprintMismatch) as error:
        build(teacher, table.head(10), tmp_path, max_length=64)
    message = str(error.value)
    assert first["fingerprint"] in message and new_fp in message and str(tmp_path) in message
    assert "max_length: 40 -> 64" in message
    assert files(tmp_path) == before  # nothing touched

    (tmp_path / "manifest.json").unlink()
    (tmp_path / "fingerprint.json").unlink()
    with pytest.raises(FingerprintMismatch, match=rf"pooled-00000.parquet has fingerprint {first['fingerprint']}"):
        build(teacher, table.head(10), tmp_path, weights_sha256="0" * 64)
    assert not (tmp_path / "fingerprint.json").exists()  # refused before writing anything


def test_invalid_arguments(teacher, table, tmp_path: Path):
    with pytest.raises(ValueError, match="poolings must be a non-empty subset of cls, mean"):
        build(teacher, table, tmp_path, poolings=("max",))
    with pytest.raises(ValueError, match="store_dtype must be one of fp32, fp16"):
        build(teacher, table, tmp_path, store_dtype="int8")
    with pytest.raises(ValueError, match="repeated: 'P000'"):
        build(teacher, pd.concat([table.head(2), table.head(1)]), tmp_path)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- teacher


def test_teacher_from_config_random_weights(teacher, tmp_path: Path):
    random = {"d_model": 64, "n_heads": 1, "n_layers": 2, "seed": 0}
    path = write_random_teacher(random, tmp_path / "teacher.safetensors")
    model, sha = teacher_from_config(str(path), random=random, device="cpu", dtype="fp32")
    assert sha == file_sha256(path)
    seq = "MKVLAAGIVGLLLAAG"
    torch.testing.assert_close(direct(model, seq), direct(teacher, seq), atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown key.*d_modle"):
        teacher_from_config(str(path), random={"d_modle": 64}, device="cpu")
    with pytest.raises(FileNotFoundError, match="write_random_teacher"):
        teacher_from_config(str(tmp_path / "missing.safetensors"), random=random, device="cpu")


# --------------------------------------------------------------------------- parts (several jobs, one cache)


def build_parts(model, table, cache_dir: Path, count: int, **overrides) -> list[Path]:
    """Every part of a ``count``-job build of ``table`` under ``cache_dir``; their directories."""
    dirs = [part_dir(cache_dir, (p, count)) for p in range(count)]
    for p, directory in enumerate(dirs):
        build(model, table, directory, part=(p, count), **overrides)
    return dirs


def test_parts_are_disjoint_and_stable(table):
    parts = sequence_parts(table["sequence"], 3)
    assert parts.tolist() == sequence_parts(table["sequence"].tolist(), 3).tolist()  # no state, no process salt
    assert set(parts.tolist()) == {0, 1, 2}
    grown = pd.concat([table["sequence"], pd.Series(["MKVLAAGIVG", "MSTNPKPQRK"])])
    assert sequence_parts(grown, 3)[: len(table)].tolist() == parts.tolist()  # added sequences move nothing
    assert (sequence_parts(table["sequence"], 1) == 0).all()
    with pytest.raises(ValueError, match="at least 1"):
        sequence_parts(table["sequence"], 0)


@pytest.mark.parametrize("count", [2, 3])
def test_gathered_parts_equal_a_single_job_cache(teacher, table, full_cache: Path, tmp_path: Path, count: int):
    dirs = build_parts(teacher, table, tmp_path, count, tokens=True)
    part_ids = [load_pooled(d).ids for d in dirs]
    assert sorted(sum(part_ids, [])) == sorted(table["id"]) and all(part_ids)  # disjoint, complete
    for p, directory in enumerate(dirs):
        assert json.loads((directory / "manifest.json").read_text())["part"] == [p, count]
    manifest = gather_cache_parts(dirs, tmp_path, table)

    single = json.loads((full_cache / "manifest.json").read_text())
    assert manifest == {**single, "parts": count}
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    gathered = {name: data for name, data in files(tmp_path).items() if name != "manifest.json"}
    reference = {name: data for name, data in files(full_cache).items() if name != "manifest.json"}
    assert gathered == reference  # byte for byte: shard files, their metadata, fingerprint.json
    cached, expected = load_pooled(tmp_path), load_pooled(full_cache)
    assert cached.ids == expected.ids and cached.splits.tolist() == expected.splits.tolist()
    for pooling in expected.vectors:
        np.testing.assert_array_equal(cached.vectors[pooling], expected.vectors[pooling])
    ids = table["id"].tolist()[::5]
    for rid, tensor in load_token_targets(tmp_path, ids).items():
        assert torch.equal(tensor, load_token_targets(full_cache, [rid])[rid])


def test_one_job_equals_today(teacher, table, full_cache: Path, tmp_path: Path):
    manifest = build(teacher, table, tmp_path, tokens=True, part=(0, 1))
    assert manifest["part"] == [0, 1]
    assert {k: v for k, v in manifest.items() if k != "part"} == json.loads((full_cache / "manifest.json").read_text())
    assert {n: d for n, d in files(tmp_path).items() if n != "manifest.json"} == {
        n: d for n, d in files(full_cache).items() if n != "manifest.json"}


def test_rebuilding_one_part_recomputes_only_it(teacher, table, tmp_path: Path, monkeypatch):
    dirs = build_parts(teacher, table, tmp_path, 2)
    first = gather_cache_parts(dirs, tmp_path, table)
    before = files(tmp_path)
    (dirs[1] / "pooled-00000.parquet").unlink()  # a lost part: its manifest and a shard
    (dirs[1] / "manifest.json").unlink()
    with pytest.raises(CacheError, match="cache incomplete: .*part-1-of-2/manifest.json"):
        gather_cache_parts(dirs, tmp_path, table)

    embedded = {"rows": 0}
    forward = teacher.forward

    def counting_forward(input_ids, *args, **kwargs):
        embedded["rows"] += input_ids.shape[0]
        return forward(input_ids, *args, **kwargs)

    monkeypatch.setattr(teacher, "forward", counting_forward)
    build(teacher, table, dirs[1], part=(1, 2))
    monkeypatch.undo()
    assert embedded["rows"] == 8  # only the lost shard of part 1 is recomputed
    (tmp_path / "pooled-00002.parquet").unlink()  # and a gathered shard lost with it
    assert gather_cache_parts(dirs, tmp_path, table) == first
    assert files(tmp_path) == before


def test_empty_parts(teacher, table, full_cache: Path, tmp_path: Path):
    small = table.head(3)
    dirs = build_parts(teacher, small, tmp_path, 6)
    assert sorted(json.loads((d / "manifest.json").read_text())["n_sequences"] for d in dirs)[0] == 0
    gather_cache_parts(dirs, tmp_path, small)
    cached = load_pooled(tmp_path)
    assert cached.ids == small["id"].tolist()
    np.testing.assert_array_equal(cached.vectors["cls"], load_pooled(full_cache).vectors["cls"][:3])


def test_parts_of_other_builds_are_refused(teacher, table, tmp_path: Path):
    dirs = build_parts(teacher, table, tmp_path / "cache", 2)
    first_fp = json.loads((dirs[0] / "manifest.json").read_text())["fingerprint"]
    other_fp = cache_fingerprint("w" * 64, 64, ("cls", "mean"), "fp32", False)[0]
    with pytest.raises(FingerprintMismatch) as error:  # a part directory built with other settings
        build(teacher, table, dirs[1], part=(1, 2), max_length=64)
    assert first_fp in str(error.value) and other_fp in str(error.value) and "max_length: 40 -> 64" in str(error.value)

    stale = tmp_path / "stale" / "part-1-of-2"
    build(teacher, table, stale, part=(1, 2), max_length=64)
    with pytest.raises(FingerprintMismatch, match=f"fingerprints {first_fp} and {other_fp}"):
        gather_cache_parts([dirs[0], stale], tmp_path / "out", table)
    with pytest.raises(CacheError, match="are parts 0-of-2; expected each of 0 .. 0 of 1 once"):
        gather_cache_parts(dirs[:1], tmp_path / "out", table)
    build(teacher, table.head(4), tmp_path / "whole")
    with pytest.raises(CacheError, match="whole is not a part"):
        gather_cache_parts([dirs[0], tmp_path / "whole"], tmp_path / "out", table)
    changed = table.copy()
    changed.loc[changed.index[-1], "split"] = "train" if changed["split"].iloc[-1] == "test" else "test"
    with pytest.raises(CacheError, match="built from other rows of the sequences table"):
        gather_cache_parts(dirs, tmp_path / "out", changed)
    build(teacher, table, tmp_path / "single", max_length=64)
    with pytest.raises(FingerprintMismatch, match=f"manifest.json has fingerprint {other_fp}"):
        gather_cache_parts(dirs, tmp_path / "single", table)  # a directory holding another cache
    with pytest.raises(ValueError, match=r"part must be \(p, n\) with 0 <= p < n, got \(2, 2\)"):
        build(teacher, table, tmp_path / "bad", part=(2, 2))
