"""protkit.teacher.stage_targets and the stage targets of a teacher cache (ProtHash 1.0's layers and logits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from protkit.models.esmc.model import ESMC_PRESETS, ESMCConfig
from protkit.models.esmc.weights import random_esmc
from protkit.sequences.tokenize import VOCAB, VOCAB_SIZE, encode_batch
from protkit.teacher import (
    DEFAULT_STAGE_LAYERS, CacheError, FingerprintMismatch, StageOptions, build_cache, default_stage_layers,
    gather_cache_parts, load_pooled, load_stage_targets, part_dir, stage_cache_bytes, stage_layers_for, stage_targets,
)  # fmt: skip
from protkit.teacher.layout import cache_fingerprint
from protkit.teacher.stage_targets import check_stage_layers

TINY = ESMCConfig(d_model=64, n_heads=1, n_layers=4)
MAX_LENGTH = 40
LAYERS = (1, 3)
AMINO = list("ACDEFGHIKLMNPQRSTVWY")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def teacher():
    return random_esmc(TINY, seed=0)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(AMINO, int(n))) for n in rng.integers(3, 60, size=13)]
    return pd.DataFrame({"id": [f"S{i:02d}" for i in range(len(seqs))], "sequence": seqs,
                         "split": ["train", "test"] * 6 + ["train"]})


def build(model, table, out_dir, **overrides) -> dict:
    args = dict(weights_sha256="w" * 64, teacher_name="tiny", dataset="unit", max_length=MAX_LENGTH,
                max_tokens_per_batch=160, shard_size=5, store_dtype="fp32", device="cpu")
    return build_cache(model, table, out_dir, **{**args, **overrides})


def full_outputs(model, sequence: str):
    """The whole model's outputs for one unpadded sequence (all hidden states)."""
    batch = encode_batch([sequence], MAX_LENGTH)
    with torch.inference_mode():
        return model(batch.input_ids, batch.attention_mask, output_hidden_states=True)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def stage_cache(teacher, table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stages")
    build(teacher, table, out, stage_layers=LAYERS, stage_tokens=True, logits=True)
    return out


@pytest.fixture(scope="module")
def plain_cache(teacher, table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    build(teacher, table, out, tokens=True)
    return out


# --------------------------------------------------------------------------- on the fly


def test_chosen_layers_equal_the_full_models_hidden_states(teacher, table):
    batch = encode_batch(table["sequence"].tolist()[:4], MAX_LENGTH)
    with torch.inference_mode():
        full = teacher(batch.input_ids, batch.attention_mask, output_hidden_states=True)
    targets = stage_targets(teacher, batch, (0, 2, 3, 3))
    assert targets.layers == (0, 2, 3, 3) and len(targets.hidden) == 4
    for layer, hidden in zip(targets.layers, targets.hidden):
        assert torch.equal(hidden, full.hidden_states[layer])  # (B, L, D), before the final norm
    assert len(VOCAB) == VOCAB_SIZE == 33
    assert targets.logits.shape == (*batch.input_ids.shape, 33)
    assert torch.equal(targets.logits, full.logits[..., :33])
    assert torch.equal(targets.last_hidden_state, full.last_hidden_state)
    assert not targets.hidden[0].requires_grad
    assert all(not block._forward_hooks for block in teacher.transformer.blocks)  # hooks removed


def test_padded_batch_equals_single_sequences(teacher, table):
    seqs = table["sequence"].tolist()[:5]
    batch = encode_batch(seqs, MAX_LENGTH)
    targets = stage_targets(teacher, batch, LAYERS)
    for row, seq in enumerate(seqs):
        alone = stage_targets(teacher, encode_batch([seq], MAX_LENGTH), LAYERS)
        n = int(batch.attention_mask[row].sum())  # real tokens, CLS and EOS included
        for padded, single in zip(targets.hidden, alone.hidden):
            torch.testing.assert_close(padded[row, :n], single[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(targets.logits[row, :n], alone.logits[0], atol=1e-5, rtol=1e-5)


def test_stage_layer_choices():
    assert DEFAULT_STAGE_LAYERS == {"esmc_300m": (7, 15, 22, 29), "esmc_600m": (8, 18, 27, 35)}
    for name, layers in DEFAULT_STAGE_LAYERS.items():
        assert stage_layers_for(name, ESMC_PRESETS[name].n_layers) == layers
    assert default_stage_layers(30) == (7, 14, 22, 29) and default_stage_layers(36) == (8, 17, 26, 35)
    assert default_stage_layers(4) == (0, 1, 2, 3) and default_stage_layers(2) == (0, 0, 1, 1)
    assert default_stage_layers(1) == (0, 0, 0, 0)
    assert stage_layers_for("demo_esmc", 4) == (0, 1, 2, 3) and stage_layers_for(None, 8, [1, 5]) == (1, 5)
    with pytest.raises(ValueError, match=r"stage_layers \[7, 15, 22, 29\].*0 .. 3.*out of range: \[7, 15, 22, 29\]"):
        stage_layers_for("esmc_300m", 4)  # a released teacher's layers on a small teacher
    for bad in ([], [-1], [0, 4], [1.0]):
        with pytest.raises(ValueError, match="stage_layers"):
            check_stage_layers(bad, 4)


# --------------------------------------------------------------------------- the cache


def test_cache_round_trip(teacher, table, stage_cache: Path):
    cached = load_pooled(stage_cache, layers=LAYERS)
    assert set(cached.vectors) == {"cls", "mean", "layer1_mean", "layer3_mean"}
    assert set(load_pooled(stage_cache).vectors) == {"cls", "mean"}  # as before unless asked
    ids = table["id"].tolist()
    residues = load_stage_targets(stage_cache, ids, layers=LAYERS, logits=True)
    only_logits = load_stage_targets(stage_cache, ids[:2], logits=True)
    assert only_logits[ids[0]].layers == {} and torch.equal(only_logits[ids[0]].logits, residues[ids[0]].logits)
    for row, (rid, seq) in enumerate(zip(ids, table["sequence"])):
        full = full_outputs(teacher, seq)
        for layer in LAYERS:
            hidden = full.hidden_states[layer][0, 1:-1]  # (L_i, D): residues only
            np.testing.assert_allclose(cached.vectors[f"layer{layer}_mean"][row], hidden.mean(0).numpy(), atol=1e-5)
            assert residues[rid].layers[layer].dtype == torch.float32
            torch.testing.assert_close(residues[rid].layers[layer], hidden, atol=2e-3, rtol=2e-3)  # float16 stored
        assert residues[rid].logits.shape == (min(len(seq), MAX_LENGTH - 2), 33)
        torch.testing.assert_close(residues[rid].logits, full.logits[0, 1:-1, :33], atol=2e-3, rtol=2e-3)
    with pytest.raises(KeyError, match="no stage targets for 1 id"):
        load_stage_targets(stage_cache, [ids[0], "nope"], layers=LAYERS)


def test_manifest_and_files(table, stage_cache: Path):
    manifest = json.loads((stage_cache / "manifest.json").read_text())
    n_shards = -(-len(table) // 5)
    assert (manifest["stage_layers"], manifest["stage_tokens"], manifest["logits"]) == ([1, 3], True, True)
    assert manifest["stage_shards"] == [f"stages-{k:05d}.safetensors" for k in range(n_shards)]
    assert manifest["logit_shards"] == [f"logits-{k:05d}.safetensors" for k in range(n_shards)]
    assert manifest["token_shards"] == [] and manifest["fingerprint_parts"]["stage_layers"] == [1, 3]
    shard = pq.read_table(stage_cache / "pooled-00000.parquet")
    assert shard.column_names == ["id", "split", "cls", "mean", "layer1_mean", "layer3_mean"]
    assert shard.schema.field("layer1_mean").type == pa.list_(pa.float32(), 64)
    from safetensors import safe_open

    with safe_open(str(stage_cache / "stages-00000.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == sorted(f"layer{x}/S{i:02d}" for i in range(5) for x in LAYERS)
        assert handle.get_tensor("layer3/S00").dtype == torch.float16


def test_cache_without_stages_refuses_them(plain_cache: Path, teacher, table, tmp_path: Path):
    with pytest.raises(CacheError, match=rf"teacher cache {plain_cache} holds no layer\(s\) 1"):
        load_pooled(plain_cache, layers=(1,))
    with pytest.raises(CacheError, match=rf"teacher cache {plain_cache} holds no layer\(s\) 1, 3"):
        load_stage_targets(plain_cache, ["S00"], layers=LAYERS)
    with pytest.raises(CacheError, match=rf"teacher cache {plain_cache} was built without the teacher's logits"):
        load_stage_targets(plain_cache, ["S00"], logits=True)
    pooled_only = tmp_path / "pooled-only"
    build(teacher, table.head(3), pooled_only, stage_layers=LAYERS)
    assert set(load_pooled(pooled_only, layers=(3,)).vectors) == {"cls", "mean", "layer3_mean"}
    with pytest.raises(CacheError, match=rf"{pooled_only} holds no per-residue vectors.*stage_tokens False"):
        load_stage_targets(pooled_only, ["S00"], layers=(3,))
    with pytest.raises(CacheError, match=r"holds no layer\(s\) 2 .*it stores layers \[1, 3\]"):
        load_pooled(pooled_only, layers=(2,))


def test_logits_only(teacher, table, stage_cache: Path, tmp_path: Path):
    manifest = build(teacher, table.head(4), tmp_path, logits=True)
    assert (manifest["stage_layers"], manifest["stage_tokens"], manifest["logits"]) == ([], False, True)
    assert "stage_shards" not in manifest and manifest["logit_shards"] == ["logits-00000.safetensors"]
    ids = table["id"].tolist()[:4]
    got, expected = load_stage_targets(tmp_path, ids, logits=True), load_stage_targets(stage_cache, ids, logits=True)
    for rid in ids:  # other batches (padded widths): equal up to float16 rounding
        torch.testing.assert_close(got[rid].logits, expected[rid].logits, atol=2e-3, rtol=2e-3)
    assert stage_targets(teacher, encode_batch(["MKV"]), ()).hidden == []


def test_fingerprints(teacher, table, plain_cache: Path, stage_cache: Path, tmp_path: Path):
    plain = cache_fingerprint("a" * 64, 40, ("cls", "mean"), "fp16", False)
    assert cache_fingerprint("a" * 64, 40, ("cls", "mean"), "fp16", False, StageOptions()) == plain
    assert "stage_layers" not in plain[1]  # caches without stages keep their fingerprint
    variants = [StageOptions((1,)), StageOptions((1, 3)), StageOptions((1, 3), tokens=True),
                StageOptions((1, 3), logits=True), StageOptions(logits=True)]
    fingerprints = {cache_fingerprint("a" * 64, 40, ("cls", "mean"), "fp16", False, v)[0] for v in variants}
    assert len(fingerprints | {plain[0]}) == 6
    assert "stage_layers" not in json.loads((plain_cache / "manifest.json").read_text())
    out = tmp_path / "cache"
    build(teacher, table.head(3), out)
    with pytest.raises(FingerprintMismatch, match=r"stage_layers: None -> \[1, 3\]"):
        build(teacher, table.head(3), out, stage_layers=LAYERS)  # a cache without stages is not reused


def test_resume_recomputes_a_lost_stage_shard(teacher, table, stage_cache: Path, tmp_path: Path):
    out = tmp_path / "cache"
    build(teacher, table, out, stage_layers=LAYERS, stage_tokens=True, logits=True)
    (out / "stages-00001.safetensors").unlink()
    (out / "manifest.json").unlink()
    build(teacher, table, out, stage_layers=[3, 1, 3], stage_tokens=True, logits=True)  # same layers
    assert files(out) == files(stage_cache)


def test_gathered_parts_equal_a_single_job(teacher, table, stage_cache: Path, tmp_path: Path):
    dirs = [part_dir(tmp_path, (p, 2)) for p in range(2)]
    for p, directory in enumerate(dirs):
        build(teacher, table, directory, part=(p, 2), stage_layers=LAYERS, stage_tokens=True, logits=True)
    manifest = gather_cache_parts(dirs, tmp_path, table)
    assert manifest == {**json.loads((stage_cache / "manifest.json").read_text()), "parts": 2}
    gathered = {n: d for n, d in files(tmp_path).items() if n != "manifest.json"}
    assert gathered == {n: d for n, d in files(stage_cache).items() if n != "manifest.json"}


def test_invalid_stage_options(teacher, table, tmp_path: Path):
    with pytest.raises(ValueError, match="stage_tokens .* set stage_layers too"):
        build(teacher, table, tmp_path, stage_tokens=True)
    with pytest.raises(ValueError, match=r"stage_layers \[1, 4\]"):
        build(teacher, table, tmp_path, stage_layers=(1, 4))
    assert not any(tmp_path.iterdir())


def test_size_estimate(table, stage_cache: Path):
    n_residues = sum(min(len(s), MAX_LENGTH - 2) for s in table["sequence"])
    stored = sum((stage_cache / n).stat().st_size for n in files(stage_cache)
                 if n.startswith(("stages-", "logits-")))
    estimate = stage_cache_bytes(n_residues, len(table), 64, len(LAYERS), tokens=True, logits=True, store_bytes=4)
    pooled_part = len(table) * len(LAYERS) * 64 * 4
    assert 0.8 < (estimate - pooled_part) / stored < 1.25
    assert stage_cache_bytes(10**6, 10**3, 960, 4, tokens=False, logits=False) == 10**3 * 4 * 960 * 2
    assert stage_cache_bytes(10**6, 10**3, 960, 4, tokens=True, logits=False) > 4 * 10**6 * 960 * 2
