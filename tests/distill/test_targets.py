"""Targets read from disk a batch at a time: the store, its readers, the numpy batching, and
training and evaluation on it giving exactly the in-memory results."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from benchmarks.synthetic_cache import synthetic_cache
from protkit.distill.config import TrainConfig
from protkit.distill.loop import train
from protkit.distill.objectives import DistillData, encode_split
from protkit.distill.rowfiles import RaggedStrings, RowFile, data_sha256
from protkit.distill.schedule import epoch_batches
from protkit.distill.start import fit_adapter
from protkit.distill.store import target_store
from protkit.evaluate.baselines import composition_features, fit_composition, fit_ridge
from protkit.evaluate.run import evaluation_splits
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.batching import length_batches, token_budget_batches
from protkit.teacher.read import CacheRows, cache_index, load_pooled

DIM = 48
MAX_LENGTH = 34
MODEL = ProtHashConfig(d_model=16, q_heads=2, kv_heads=1, n_layers=1, teacher_dim=DIM, context_length=64)
CFG = TrainConfig(lr=3e-3, warmup_steps=2, max_steps=6, batch_tokens=6 * MAX_LENGTH, eval_every=3,
                  checkpoint_every=3, max_length=MAX_LENGTH, seed=1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    """120 random proteins in shards of 32 (fp16 vectors, 20% test)."""
    out = tmp_path_factory.mktemp("synthetic")
    return synthetic_cache(out, 120, DIM, shard_size=32, residues=(5, 45), test_fraction=0.2,
                           max_length=MAX_LENGTH, seed=4)


@pytest.fixture(scope="module")
def store(synthetic, tmp_path_factory):
    parquet, cache = synthetic
    return target_store(parquet, cache, ("cls", "mean"), tmp_path_factory.mktemp("store") / "targets")


def in_memory(synthetic) -> dict[str, DistillData]:
    """Both splits as load_pooled gives them: float32 arrays in memory (the reference path)."""
    import pandas as pd

    parquet, cache = synthetic
    cached = load_pooled(cache)
    by_id = dict(pd.read_parquet(parquet, columns=["id", "sequence"]).itertuples(index=False))
    parts = {}
    for split in ("train", "test"):
        rows = np.flatnonzero(np.asarray(cached.splits) == split)
        ids = [cached.ids[i] for i in rows]
        parts[split] = DistillData([by_id[i] for i in ids], {p: v[rows] for p, v in cached.vectors.items()}, ids=ids)
    return parts


# --- readers ---------------------------------------------------------------------------------
def test_length_batches_match_token_budget_batches():
    rng = np.random.default_rng(0)
    for n, budget, cap in [(500, 400, None), (500, 400, 5), (77, 30, None), (1, 10, None), (300, 3000, 7)]:
        lengths = rng.integers(3, 60, size=n)
        ours = [b.tolist() for b in length_batches(lengths, budget, cap)]
        assert ours == token_budget_batches(lengths.tolist(), budget, cap)


def test_epoch_batches_keep_the_order_of_the_list_based_batching():
    cfg = replace(CFG, batch_size=4)
    lengths = np.random.default_rng(1).integers(3, 40, size=200)
    for epoch in range(3):  # the former epoch_batches, on token_budget_batches
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = rng.permutation(len(lengths))
        batches = token_budget_batches([int(lengths[p]) for p in perm], cfg.batch_tokens, cfg.batch_size)
        batches = [[int(perm[i]) for i in batch] for batch in batches]
        expected = [batches[i] for i in rng.permutation(len(batches))]
        assert [b.tolist() for b in epoch_batches(lengths, cfg, epoch)] == expected


def test_row_file_and_ragged_strings_read_what_was_written(tmp_path):
    array = np.arange(70, dtype=np.float16).reshape(10, 7)
    np.save(tmp_path / "a.npy", array)
    rows = RowFile(tmp_path / "a.npy")
    assert (rows.shape, rows.dtype, len(rows)) == ((10, 7), np.float16, 10)
    np.testing.assert_array_equal(rows[[3, 0, 9, 3]], array[[3, 0, 9, 3]])
    np.testing.assert_array_equal(rows[2:5], array[2:5])
    np.testing.assert_array_equal(np.concatenate(list(rows.chunks())), array)
    with pytest.raises(IndexError):
        rows[[10]]
    words = ["MKV", "", "ACDEFG", "W"]
    (tmp_path / "w.bin").write_bytes("".join(words).encode())
    np.save(tmp_path / "w.offsets.npy", np.cumsum([0] + [len(w) for w in words]))
    strings = RaggedStrings(tmp_path, "w")
    assert (len(strings), strings[2], list(strings), strings[1:3]) == (4, "ACDEFG", words, ["", "ACDEFG"])


# --- the store -------------------------------------------------------------------------------
def test_store_holds_the_cache_values_in_cache_order(synthetic, store):
    reference = in_memory(synthetic)
    for split, data in reference.items():
        part = store.splits[split]
        assert list(part.ids) == data.ids and list(part.sequences) == data.sequences
        for pooling in ("cls", "mean"):
            assert part.targets[pooling].dtype == np.float16  # the cache's store dtype, never widened on disk
            np.testing.assert_array_equal(np.asarray(part.targets[pooling][:], np.float32), data.targets[pooling])
        lengths = [len(s) + 2 if len(s) <= MAX_LENGTH - 2 else MAX_LENGTH for s in data.sequences]
        assert part.lengths.tolist() == lengths
    train = reference["train"]
    assert store.train_sha256 == data_sha256(train.sequences, train.targets)


def test_store_is_reused_for_the_same_key_and_rebuilt_for_another(synthetic, tmp_path):
    parquet, cache = synthetic
    first = target_store(parquet, cache, ["mean"], tmp_path / "t")
    built = (tmp_path / "t" / "store.json").stat().st_mtime_ns
    again = target_store(parquet, cache, ["mean"], tmp_path / "t")
    assert (tmp_path / "t" / "store.json").stat().st_mtime_ns == built and again.info == first.info
    both = target_store(parquet, cache, ["cls", "mean"], tmp_path / "t")  # other poolings: rebuilt
    assert both.info["key"]["poolings"] == ["cls", "mean"] and set(both.splits["train"].targets) == {"cls", "mean"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_store_joins_a_table_in_another_order_and_names_missing_ids(synthetic, tmp_path, store):
    import pandas as pd

    from benchmarks.synthetic_cache import write_sequences

    parquet, cache = synthetic
    table = pd.read_parquet(parquet).iloc[::-1]
    shuffled = write_sequences(tmp_path / "reversed.parquet", table["id"], table["sequence"], table["split"])
    joined = target_store(shuffled, cache, ["cls", "mean"], tmp_path / "t")
    assert list(joined.splits["train"].sequences) == list(store.splits["train"].sequences)
    short = write_sequences(tmp_path / "short.parquet", table["id"][1:], table["sequence"][1:], table["split"][1:])
    with pytest.raises(ValueError, match=rf"1 sequence ids of the teacher cache {cache} are not in .*short.parquet"):
        target_store(short, cache, ["mean"], tmp_path / "u")


def test_cache_rows_read_any_rows_of_the_shards(synthetic):
    parquet, cache = synthetic
    cached = load_pooled(cache)
    ids, starts = cache_index(cache, cached.manifest)
    assert ids.to_pylist() == cached.ids and starts.tolist() == [0, 32, 64, 96, 120]
    rows = np.array([119, 0, 33, 64, 63, 5])
    reader = CacheRows(cache, cached.manifest["shards"], starts, "cls", DIM, rows)
    np.testing.assert_array_equal(reader[:], cached.vectors["cls"][rows])
    np.testing.assert_array_equal(reader[2:4], cached.vectors["cls"][rows[2:4]])


# --- training and evaluation on the store ------------------------------------------------------
def test_training_from_the_store_is_bit_identical_to_training_in_memory(synthetic, store, tmp_path):
    """The streamed path (pread rows, fp16 -> float32 per batch, tokens per batch, numpy batching)
    against the reference path (load_pooled float32 arrays): same batches, same weights, bitwise."""
    reference = in_memory(synthetic)
    parts = {split: DistillData(p.sequences, p.targets, None, p.ids, p.lengths,
                                store.train_sha256 if split == "train" else None)
             for split, p in store.splits.items()}
    cfg = replace(CFG, center_cosine=True)  # reads the train-split mean from the store too
    model = replace(MODEL, adapter_bias=True)  # the centred adapter fit
    runs = {}
    for name, data in (("memory", reference), ("store", parts)):
        runs[name] = train(model, cfg, None, data["train"], data["test"], tmp_path / name / "model",
                           tmp_path / name / "ckpt", tmp_path / name / "tb", "cpu")
    a, b = (load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs["memory"]["config_hash"] == runs["store"]["config_hash"]  # same training-data digest
    assert runs["memory"]["heldout_cosine_final"] == runs["store"]["heldout_cosine_final"]
    assert runs["memory"]["train_loss_last"] == runs["store"]["train_loss_last"]


@pytest.mark.parametrize("bias", [False, True])
def test_adapter_fit_in_blocks_matches_the_one_block_fit(store, monkeypatch, bias):
    part = store.splits["train"]
    data = DistillData(part.sequences, part.targets, None, part.ids, part.lengths)
    enc = encode_split(data, MAX_LENGTH, CFG, DIM, "train", "v")
    config = replace(MODEL, adapter_bias=bias)
    weights = []
    for block_bytes in (1 << 30, 8 * (config.d_model + DIM) * 20):  # one block; ~20 rows a block
        monkeypatch.setattr("protkit.distill.start.ADAPTER_BLOCK_BYTES", block_bytes)
        torch.manual_seed(0)
        model = ProtHash(config)
        fit_adapter(model, enc, CFG, torch.device("cpu"))
        weights.append([t.clone() for t in model.adapter.parameters()])
    for one, blocked in zip(*weights):
        torch.testing.assert_close(blocked, one, rtol=1e-5, atol=1e-6)


def test_composition_fit_in_blocks_matches_fit_ridge(synthetic):
    train = in_memory(synthetic)["train"]
    exact = fit_ridge(composition_features(train.sequences), train.targets["mean"], 1.0)
    same = fit_composition(train.sequences, {"mean": train.targets["mean"]}, 1.0)["mean"]
    blocked = fit_composition(train.sequences, {"mean": train.targets["mean"]}, 1.0, block_rows=17)["mean"]
    for field in ("mean", "scale", "coef", "intercept"):
        np.testing.assert_array_equal(getattr(same, field), getattr(exact, field))
        np.testing.assert_allclose(getattr(blocked, field), getattr(exact, field), rtol=1e-9, atol=1e-12)


def test_evaluation_splits_read_the_test_sample_and_stream_the_train_split(synthetic):
    parquet, cache = synthetic
    reference = in_memory(synthetic)
    test, train, manifest = evaluation_splits(parquet, cache, ["cls", "mean"], 10, seed=0)
    assert manifest["d_model"] == DIM and len(test.ids) == 10 and train.ids == reference["train"].ids
    rows = [reference["test"].ids.index(i) for i in test.ids]
    np.testing.assert_array_equal(test.teacher["cls"], reference["test"].targets["cls"][rows])
    assert isinstance(train.teacher["mean"], CacheRows)
    np.testing.assert_array_equal(train.teacher["mean"][:], reference["train"].targets["mean"])


def test_store_readers_leave_no_mapping(store):
    """Rows come through pread: no file of the store is memory-mapped (mapped pages count in RSS)."""
    store.splits["train"].targets["cls"][list(range(len(store.splits["train"])))]
    maps = Path(f"/proc/{os.getpid()}/maps")
    if not maps.exists():
        pytest.skip("no /proc")
    assert str(store.directory) not in maps.read_text()
