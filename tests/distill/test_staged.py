"""ProtHash 1.0 students trained with the stages objective (protkit.distill.staged): from a teacher
cache with stage targets and with the teacher run beside the student, resumed after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from protkit.data.table import read_dataset
from protkit.distill import distill_from_cache
from protkit.distill.config import CacheFacts, TrainConfig, variant_settings
from protkit.distill.objectives import DistillData, encode_split
from protkit.distill.staged import CachedStages, TeacherStages
from protkit.models.prothash_v1.model import StagedProtHash
from protkit.sequences.tokenize import residue_mask
from protkit.teacher import build_cache, teacher_from_config, write_random_teacher
from protkit.teacher.read import StageTokenTargets
from stops import Killed, kill_at

MAX_LENGTH = 40
RANDOM = {"d_model": 64, "n_heads": 1, "n_layers": 4, "seed": 3}
LAYERS = [0, 1, 2, 3]
AMINO = list("ACDEFGHIKLMNPQRSTVWY")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory) -> dict:
    """A random teacher's weights file, a sequences table and a cache with stage targets and logits."""
    from benchmarks.synthetic_cache import write_sequences

    tmp = tmp_path_factory.mktemp("staged")
    rng = np.random.default_rng(5)
    seqs = ["".join(rng.choice(AMINO, int(n))) for n in rng.integers(5, 60, size=30)]
    ids = [f"s{i:02d}" for i in range(len(seqs))]
    parquet = write_sequences(tmp / "sequences.parquet", ids, seqs, ["train", "train", "test"] * 10)
    weights = write_random_teacher(RANDOM, tmp / "teacher.safetensors")
    teacher = {"weights": str(weights), "random": RANDOM, "precision": "fp32"}
    model, sha = teacher_from_config(weights, random=RANDOM, device="cpu")
    build_cache(model, read_dataset(parquet), tmp / "cache", weights_sha256=sha, teacher_name="tiny",
                dataset="unit", max_length=MAX_LENGTH, max_tokens_per_batch=400, store_dtype="fp32", shard_size=8,
                device="cpu", stage_layers=LAYERS, stage_tokens=True, logits=True)
    build_cache(model, read_dataset(parquet), tmp / "plain", weights_sha256=sha, teacher_name="tiny",
                dataset="unit", max_length=MAX_LENGTH, max_tokens_per_batch=400, store_dtype="fp32", shard_size=8,
                device="cpu")
    return {"parquet": parquet, "cache": tmp / "cache", "plain": tmp / "plain", "teacher": teacher}


def variant(**training) -> dict:
    return {
        "architecture": {"family": "v1", "d_model": 32, "heads": 4, "hidden_ratio": 2, "stage_layers": [1, 1, 1, 1],
                         "context_length": 64, "mlm_head": True},
        "training": {"objective": "stages", "max_steps": 8, "batch_tokens": 6 * MAX_LENGTH, "eval_every": 4,
                     "checkpoint_every": 2, "lr": 3e-3, "warmup_steps": 2, **training},
    }


def distill(files: dict, out: Path, cache: str = "cache", **kwargs) -> dict:
    return distill_from_cache(files["parquet"], files[cache], kwargs.pop("config", variant()), out / "model",
                              out / "ckpt", out / "tb", "cpu", teacher=files["teacher"], **kwargs)


def test_trains_from_the_cache_and_improves_every_stage(teacher_files, tmp_path):
    summary = distill(teacher_files, tmp_path)
    model = StagedProtHash.from_pretrained(tmp_path / "model")
    assert model.config.teacher_dim == 64 and model.config.mlm_head
    assert summary["teacher_layers"] == LAYERS and summary["stage_targets"] == "cache"
    assert (summary["n_train"], summary["n_test"], summary["steps"]) == (20, 10, 8)
    initial, final = summary["heldout_cosine_initial"], summary["heldout_cosine_final"]
    assert list(final) == ["stage1", "stage2", "stage3", "stage4"]
    assert all(final[s] > initial[s] + 0.05 for s in final), (initial, final)
    assert summary["train_loss_end"] < summary["train_loss_start"]
    written = json.loads((tmp_path / "model" / "training_summary.json").read_text())
    assert written["teacher_layers"] == LAYERS


def test_both_sources_give_the_same_targets(teacher_files):
    """On one padded batch, the cache's targets (float16 per residue) equal the teacher's run beside the
    student on every residue, and both are zero elsewhere."""
    table = read_dataset(teacher_files["parquet"])
    data = DistillData(list(table["sequence"][:6]), {}, None, list(table["id"][:6]))
    split = encode_split(data, MAX_LENGTH, TrainConfig(objective="stages"), 64, "train", "v")
    batch = split.batch(range(6), torch.device("cpu"))
    model, _ = teacher_from_config(teacher_files["teacher"]["weights"], random=RANDOM, device="cpu")
    cached = CachedStages(StageTokenTargets(teacher_files["cache"], LAYERS, logits=True)).targets(range(6), split,
                                                                                                  batch)
    live = TeacherStages(model, tuple(LAYERS)).targets(range(6), split, batch)
    mask = residue_mask(batch.input_ids, batch.attention_mask)  # (B, L)
    for a, b in zip([*cached[0], cached[1]], [*live[0], live[1]]):
        torch.testing.assert_close(a[mask], b[mask], rtol=2e-3, atol=2e-3)  # float16 storage
        assert not a[~mask].any()


def test_teacher_beside_the_student_trains_like_the_cache(teacher_files, tmp_path):
    cached = distill(teacher_files, tmp_path / "cached", config=variant(max_steps=4))
    live = distill(teacher_files, tmp_path / "live", cache="plain",
                   config=variant(max_steps=4, stage_targets="teacher", teacher_layers=LAYERS))
    assert live["stage_targets"] == "teacher" and live["teacher_layers"] == LAYERS
    assert live["heldout_cosine_initial"] == pytest.approx(cached["heldout_cosine_initial"], abs=1e-3)
    assert live["train_loss_last"] == pytest.approx(cached["train_loss_last"], rel=1e-3)
    wa, wb = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("cached", "live"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-2


def test_a_killed_run_resumes_to_the_same_weights(teacher_files, tmp_path):
    whole = distill(teacher_files, tmp_path / "a")
    with pytest.raises(Killed):  # between checkpoints (2, 4): step 5 is redone
        distill(teacher_files, tmp_path / "b", on_step=kill_at(5), clear_checkpoints=False)
    resumed = distill(teacher_files, tmp_path / "b")
    assert resumed["resumed_from_step"] == 4 and whole["resumed_from_step"] is None
    wa, wb = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # bit-identical on CPU
    assert resumed["train_loss_end"] == whole["train_loss_end"]


def test_a_cache_without_stage_targets_is_refused_naming_the_key(teacher_files, tmp_path):
    with pytest.raises(ValueError, match=r"variants\.v1\.training\.stage_targets is 'cache' but the teacher cache "
                                         r"holds no per-residue vectors.*stage_targets: teacher"):
        distill(teacher_files, tmp_path, cache="plain", variant_name="v1")


@pytest.mark.parametrize(("changes", "message"), [
    ({"training": {"objective": "pooled"}}, r"v\.training\.objective must be 'stages' for a ProtHash 1\.0"),
    ({"qat": {"enabled": True}}, r"v\.qat\.enabled: quantization-aware training is for ProtHash 0\.2"),
    ({"training": {"objective": "stages", "stage_weights": [1, 1]}}, r"v\.training\.stage_weights must be 4"),
    ({"training": {"objective": "stages", "stage_targets": "disk"}}, r"v\.training\.stage_targets must be one of"),
    ({"architecture": {"family": "v3"}}, r"v\.architecture\.family: unknown family 'v3'"),
    ({"architecture": {"family": "v1", "q_heads": 4}}, r"v\.architecture: unknown keys q_heads for family v1"),
])
def test_settings_are_checked_naming_the_key(changes, message):
    config = variant()
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    facts = CacheFacts(64, "tiny", MAX_LENGTH, ["cls", "mean"], False, tuple(LAYERS), True)
    with pytest.raises(ValueError, match=message):
        variant_settings(config, facts, "v")


def test_the_stages_objective_needs_a_v1_student():
    config = {"architecture": {"d_model": 32, "q_heads": 4, "kv_heads": 2}, "training": {"objective": "stages"}}
    facts = CacheFacts(64, "tiny", MAX_LENGTH, ["cls", "mean"], False, tuple(LAYERS), True)
    with pytest.raises(ValueError, match=r"v\.training\.objective 'stages' trains ProtHash 1\.0 students only"):
        variant_settings(config, facts, "v")


def test_the_teacher_beside_the_student_takes_auto_precision_on_the_training_device(teacher_files, monkeypatch):
    """``precision: auto`` resolves where the teacher runs: bf16 on a CPU with bf16 units, fp32 without."""
    from protkit.distill.run import stage_source
    from protkit.models.cpu import FLAGS_ENV, this_cpu
    from protkit.teacher.layout import read_manifest

    manifest = read_manifest(teacher_files["plain"])
    cache = CacheFacts(int(manifest["d_model"]), manifest.get("teacher"), manifest["max_length"],
                       manifest["poolings"], False)
    settings = variant_settings(variant(stage_targets="teacher", teacher_layers=LAYERS), cache)
    teacher = {**teacher_files["teacher"], "precision": "auto"}
    dtypes = {}
    try:
        for flags in ("avx2", "avx2 avx512_bf16 amx_bf16"):
            monkeypatch.setenv(FLAGS_ENV, flags)
            this_cpu.cache_clear()
            on_device, origin = stage_source(settings, teacher_files["plain"], manifest, teacher, "variants.v1")
            dtypes[flags] = next(on_device(torch.device("cpu")).teacher.parameters()).dtype
    finally:
        this_cpu.cache_clear()
    assert dtypes == {"avx2": torch.float32, "avx2 avx512_bf16 amx_bf16": torch.bfloat16}
    assert origin[0] == "teacher"
