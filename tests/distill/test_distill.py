"""Distillation: learning, schedule, checkpoints/resume, QAT, outputs (tiny models, real proteins)."""

from __future__ import annotations

import importlib.resources
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from protkit.distill.checkpoints import checkpoint_files
from protkit.distill.config import TrainConfig, build_model_config
from protkit.distill.loop import train
from protkit.distill.objectives import DistillData, distill_loss, encode_split
from protkit.distill.qat import QATSettings, convert_qat, fake_quantized_layers, prepare_qat
from protkit.distill.run import distill_from_cache
from protkit.distill.schedule import lr_factor
from protkit.distill.start import zero_residual_branches
from protkit.models.esmc.model import ESMCConfig
from protkit.models.esmc.weights import random_esmc
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.fasta import read_fasta
from protkit.sequences.pooling import pool
from protkit.sequences.tokenize import encode_batch, residue_mask
from stops import Killed, kill_at

MAX_LENGTH = 42  # 40 residues + CLS/EOS
MODEL = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64, context_length=256)
BASE = TrainConfig(
    lr=3e-3, warmup_steps=4, max_steps=30, batch_tokens=8 * MAX_LENGTH, eval_every=10,
    checkpoint_every=10, max_length=MAX_LENGTH, seed=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def proteins() -> list[str]:
    path = importlib.resources.files("pyhmmer") / "tests/data/seqs/938293.PRJEB85.HG003687.faa"
    if not path.is_file():
        pytest.skip(f"pyhmmer's test proteome {path} is not installed")
    records = read_fasta(str(path))
    return [next(records).sequence.rstrip("*") for _ in range(48)]


@pytest.fixture(scope="module")
def teacher_data(proteins) -> tuple[DistillData, DistillData]:
    """Train (36) / test (12) targets from a tiny random ESMC teacher."""
    teacher = random_esmc(ESMCConfig(d_model=64, n_heads=1, n_layers=2), seed=0)

    def targets(seqs: list[str], ids: list[str]) -> DistillData:
        batch = encode_batch(seqs, MAX_LENGTH)
        with torch.no_grad():
            hidden = teacher(batch.input_ids, batch.attention_mask).last_hidden_state  # (B, L, 64)
        pooled = {p: pool(hidden, batch.input_ids, batch.attention_mask, p).numpy() for p in ("cls", "mean")}
        tokens = [t.clone() for t in pool(hidden, batch.input_ids, batch.attention_mask, "tokens")]
        return DistillData(seqs, pooled, tokens, ids)

    ids = [f"p{i}" for i in range(len(proteins))]
    return targets(proteins[:36], ids[:36]), targets(proteins[36:], ids[36:])


def run(tmp: Path, data, cfg: TrainConfig = BASE, model: ProtHashConfig = MODEL, qat=None, **kwargs) -> dict:
    train_data, test_data = data
    return train(model, cfg, qat, train_data, test_data, tmp / "model", tmp / "ckpt", tmp / "tb", "cpu", **kwargs)


def scalars(tb_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def pooled_run(tmp_path_factory, teacher_data) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("pooled")
    return tmp, run(tmp, teacher_data)


# --- learning and outputs --------------------------------------------------------------------
def test_pooled_loss_falls_and_heldout_cosine_rises(pooled_run):
    _, summary = pooled_run
    assert summary["steps"] == 30
    assert summary["train_loss_end"] < 0.7 * summary["train_loss_start"]
    for pooling in ("cls", "mean"):
        # the ridge-fitted adapter starts above the random student; training ends far above it
        assert summary["heldout_cosine_initial"][pooling] > summary["heldout_cosine_untrained"][pooling]
        assert summary["heldout_cosine_final"][pooling] > summary["heldout_cosine_untrained"][pooling] + 0.2


def test_training_alone_raises_cosine_from_a_random_adapter(tmp_path, teacher_data):
    summary = run(tmp_path, teacher_data, replace(BASE, adapter_init="random", residual_init="random"))
    for pooling in ("cls", "mean"):
        assert summary["heldout_cosine_initial"][pooling] == pytest.approx(summary["heldout_cosine_untrained"][pooling])
        assert summary["heldout_cosine_final"][pooling] > summary["heldout_cosine_initial"][pooling] + 0.2


def test_zero_residual_start_is_a_per_residue_lookup_that_still_learns(proteins):
    torch.manual_seed(0)
    model = ProtHash(MODEL)
    zero_residual_branches(model)
    batch = encode_batch(proteins[:4], MAX_LENGTH)
    with torch.no_grad():
        hidden = model(batch.input_ids, batch.attention_mask)  # (B, L, d)
        mean = model.embed_native(batch.input_ids, batch.attention_mask, "mean")  # (B, d)
    # every block is an identity: each position holds its token embedding ...
    torch.testing.assert_close(hidden, model.token_embeddings(batch.input_ids))
    # ... so mean pooling is the composition-weighted average of residue embeddings
    residues = residue_mask(batch.input_ids, batch.attention_mask)  # (B, L): not CLS, EOS or padding
    counts = torch.stack([torch.bincount(ids[m], minlength=MODEL.vocab_size) for ids, m in zip(batch.input_ids, residues)])
    expected = (counts.float() @ model.token_embeddings.weight) / counts.sum(1, keepdim=True)  # (B, d)
    torch.testing.assert_close(mean, expected)
    # gradients reach the zeroed projections at once, and every weight after one step
    model.embed_native(batch.input_ids, batch.attention_mask, "mean").pow(2).sum().backward()
    assert all(b.attention.out_proj.weight.grad.abs().sum() > 0 for b in model.blocks)
    assert all(b.feed_forward.linear2.weight.grad.abs().sum() > 0 for b in model.blocks)


def test_pooling_weights_weight_the_per_pooling_losses(teacher_data):
    torch.manual_seed(0)
    model = ProtHash(MODEL)
    rows = list(range(8))

    def loss(**overrides) -> float:
        cfg = replace(BASE, **overrides)
        enc = encode_split(teacher_data[0], MAX_LENGTH, cfg, MODEL.teacher_dim, "train", "v")
        with torch.no_grad():
            return distill_loss(model, enc, rows, cfg, torch.device("cpu"), False).item()

    cls_only, mean_only = loss(poolings=("cls",)), loss(poolings=("mean",))
    assert cls_only != pytest.approx(mean_only)
    assert loss() == pytest.approx((cls_only + mean_only) / 2, rel=1e-6)
    assert loss(pooling_weights={"cls": 0.0}) == pytest.approx(mean_only, rel=1e-6)
    assert loss(pooling_weights={"mean": 3.0}) == pytest.approx((cls_only + 3 * mean_only) / 4, rel=1e-6)


def test_outputs_load_and_reproduce_the_reported_cosine(pooled_run, teacher_data):
    tmp, summary = pooled_run
    assert {p.name for p in (tmp / "model").iterdir()} == {"config.json", "model.safetensors", "training_summary.json"}
    assert json.loads((tmp / "model" / "training_summary.json").read_text()) == json.loads(json.dumps(summary))
    model = ProtHash.from_pretrained(tmp / "model")
    assert model.config == MODEL
    test = teacher_data[1]
    batch = encode_batch(test.sequences, MAX_LENGTH)
    with torch.no_grad():
        for pooling in ("cls", "mean"):
            pred = model.embed_teacher(batch.input_ids, batch.attention_mask, pooling)
            cosine = F.cosine_similarity(pred, torch.from_numpy(test.targets[pooling]), dim=-1).mean().item()
            assert cosine == pytest.approx(summary["heldout_cosine_final"][pooling], abs=1e-5)
    assert summary["residues_per_second"] > 0 and summary["residues_seen"] > 0
    assert summary["qat"] == {"enabled": False}


def test_tensorboard_has_loss_lr_and_eval_cosine(pooled_run):
    tmp, summary = pooled_run
    assert list((tmp / "tb").glob("events.out.tfevents.*"))
    logged = scalars(tmp / "tb")
    assert sorted(logged["train/loss"]) == list(range(1, 31))
    assert sorted(logged["eval/cosine_cls"]) == [0, 10, 20, 30]
    assert logged["eval/cosine_mean"][0] == pytest.approx(summary["heldout_cosine_initial"]["mean"], abs=1e-6)
    assert logged["train/loss"][30] == pytest.approx(summary["train_loss_last"], rel=1e-6)
    # The lr used by step s (1-based) follows warm-up then cosine decay.
    for step, lr in logged["train/lr"].items():
        assert lr == pytest.approx(BASE.lr * lr_factor(step - 1, BASE.warmup_steps, BASE.max_steps), rel=1e-6)


def test_lr_schedule_values():
    assert [lr_factor(s, 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(20, 4, 20, min_lr_ratio=0.1) == pytest.approx(0.1)
    decay = [lr_factor(s, 4, 20) for s in range(4, 21)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_tokens_objective_learns(tmp_path, teacher_data):
    cfg = replace(BASE, objective="tokens", max_steps=20)
    summary = run(tmp_path, teacher_data, cfg)
    assert summary["train_loss_end"] < 0.8 * summary["train_loss_start"]
    assert summary["heldout_cosine_final"]["tokens"] > summary["heldout_cosine_initial"]["tokens"] + 0.2


def test_tokens_objective_needs_token_targets(tmp_path, teacher_data):
    train_data, test_data = teacher_data
    no_tokens = DistillData(train_data.sequences, train_data.targets)
    with pytest.raises(ValueError, match="objective is 'tokens'.*no per-residue targets"):
        run(tmp_path, (no_tokens, test_data), replace(BASE, objective="tokens"))


# --- checkpoints and resume ------------------------------------------------------------------
def test_interrupted_runs_resume_to_the_same_weights(tmp_path, teacher_data):
    cfg = replace(BASE, max_steps=12, checkpoint_every=4, eval_every=5, grad_accum=2, batch_tokens=4 * MAX_LENGTH)
    model = replace(MODEL, dropout=0.2)
    a = run(tmp_path / "a", teacher_data, cfg, model)
    b_dir = tmp_path / "b"
    with pytest.raises(Killed):  # between checkpoints: steps 5-6 are redone
        run(b_dir, teacher_data, cfg, model, on_step=kill_at(6))
    assert [p.name for p in checkpoint_files(b_dir / "ckpt")] == ["step-00000004.pt"]
    with pytest.raises(Killed):  # right after the step-8 checkpoint
        run(b_dir, teacher_data, cfg, model, on_step=kill_at(8))
    b = run(b_dir, teacher_data, cfg, model)

    assert b["resumed_from_step"] == 8 and a["resumed_from_step"] is None
    assert a["epoch"] >= 1  # the data order went through epoch boundaries
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in (tmp_path / "a", b_dir))
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6
    assert b["train_loss_end"] == pytest.approx(a["train_loss_end"], abs=1e-7)
    assert b["heldout_cosine_initial"] == a["heldout_cosine_initial"]
    assert [p.name for p in checkpoint_files(b_dir / "ckpt")] == ["step-00000008.pt", "step-00000012.pt"]


def test_checkpoint_from_other_settings_is_refused(pooled_run, teacher_data, tmp_path):
    tmp, _ = pooled_run
    train_data, test_data = teacher_data
    with pytest.raises(ValueError, match=rf"{tmp / 'ckpt'}.*differing: training\.lr.*Delete"):
        train(MODEL, replace(BASE, lr=1e-3), None, train_data, test_data, tmp_path / "m", tmp / "ckpt",
              tmp_path / "tb", "cpu")


def test_finished_checkpoint_resumes_without_training(pooled_run, teacher_data, tmp_path):
    tmp, first = pooled_run
    train_data, test_data = teacher_data
    cfg = replace(BASE, eval_every=7)  # not part of the checkpoint identity
    again = train(MODEL, cfg, None, train_data, test_data, tmp_path / "m", tmp / "ckpt", tmp_path / "tb", "cpu")
    assert again["resumed_from_step"] == 30 and again["steps"] == 30
    assert again["heldout_cosine_final"] == pytest.approx(first["heldout_cosine_final"], abs=1e-7)


# --- QAT -------------------------------------------------------------------------------------
def test_prepare_fake_quantizes_block_linears_and_convert_restores_float():
    torch.manual_seed(0)
    model, plain = ProtHash(MODEL), ProtHash(MODEL)
    plain.load_state_dict(model.state_dict())
    keys = list(model.state_dict())
    prepare_qat(model, QATSettings(enabled=True, group_size=16))
    assert fake_quantized_layers(model) == 6 * MODEL.n_layers  # q, k, v, out, linear1, linear2
    assert type(model.adapter) is torch.nn.Linear and list(model.state_dict()) == keys
    ids = encode_batch(["MKTAYIAKQRQISFVKSHFSRQ", "MADEEKLPPGWEKRMS"]).input_ids
    with torch.no_grad():
        assert not torch.allclose(model.embed_teacher(ids), plain.embed_teacher(ids), atol=1e-5)
        convert_qat(model)
        assert fake_quantized_layers(model) == 0
        assert torch.equal(model.embed_teacher(ids), plain.embed_teacher(ids))


def test_qat_training_saves_a_plain_float_model(tmp_path, teacher_data):
    cfg = replace(BASE, max_steps=4, eval_every=4, checkpoint_every=4)
    qat = QATSettings(enabled=True, group_size=16)
    summary = run(tmp_path / "qat", teacher_data, cfg, qat=qat)
    run(tmp_path / "float", teacher_data, cfg)
    weights = load_file(str(tmp_path / "qat" / "model" / "model.safetensors"))
    plain = load_file(str(tmp_path / "float" / "model" / "model.safetensors"))
    assert weights.keys() == ProtHash(MODEL).state_dict().keys()
    assert all(w.dtype == torch.float32 for w in weights.values())
    # Same seed and data: only the fake quantization differs, so the weights do.
    assert max((weights[k] - plain[k]).abs().max().item() for k in weights) > 1e-6
    assert summary["qat"]["enabled"] and summary["qat"]["group_size"] == 16
    assert set(summary["qat"]["heldout_cosine_fake_quant"]) == {"cls", "mean"}
    ProtHash.from_pretrained(tmp_path / "qat" / "model")


def test_qat_group_size_must_divide_layer_widths(tmp_path, teacher_data):
    train_data, test_data = teacher_data
    with pytest.raises(ValueError, match=r"variants\.tiny\.qat\.group_size = 24 does not divide.*\[32, 64\]"):
        train(MODEL, BASE, QATSettings(enabled=True, group_size=24), train_data, test_data, tmp_path / "m",
              tmp_path / "c", tmp_path / "tb", "cpu", config_key="variants.tiny")


# --- configuration ---------------------------------------------------------------------------
def test_train_config_from_dict():
    cfg = TrainConfig.from_dict({"lr": "1e-3", "poolings": ["mean"], "betas": [0.9, 0.95], "max_steps": 5})
    assert (cfg.lr, cfg.poolings, cfg.betas, cfg.max_steps) == (1e-3, ("mean",), (0.9, 0.95), 5)
    with pytest.raises(ValueError, match=r"variants\.x\.training: unknown keys learning_rate, warmup"):
        TrainConfig.from_dict({"learning_rate": 1, "warmup": 2}, "variants.x.training")
    with pytest.raises(ValueError, match=r"training\.objective must be one of pooled, tokens"):
        TrainConfig.from_dict({"objective": "logits"})
    with pytest.raises(ValueError, match=r"training\.max_steps must be an integer, got '10'"):
        TrainConfig.from_dict({"max_steps": "10"})
    with pytest.raises(ValueError, match=r"training\.grad_accum must be positive"):
        TrainConfig.from_dict({"grad_accum": 0})
    with pytest.raises(ValueError, match=r"training\.pooling_weights must be a mapping"):
        TrainConfig.from_dict({"pooling_weights": [1, 2]})
    with pytest.raises(ValueError, match=r"training\.pooling_weights names tokens, not in poolings"):
        TrainConfig.from_dict({"pooling_weights": {"tokens": 1}})
    with pytest.raises(ValueError, match=r"training\.pooling_weights are all 0"):
        TrainConfig.from_dict({"poolings": ["mean"], "pooling_weights": {"mean": 0}})
    with pytest.raises(ValueError, match=r"training\.residual_init must be 'zero' or 'random'"):
        TrainConfig.from_dict({"residual_init": "ones"})
    with pytest.raises(ValueError, match=r"v\.qat: unknown keys bits"):
        QATSettings.from_dict({"enabled": True, "bits": 4}, "v.qat")


def test_build_model_config_from_preset_and_overrides():
    cfg = build_model_config({"preset": "ProtHash-V2-384-Tiny", "architecture": {"dropout": 0.1}}, 960, "esmc_300m")
    assert (cfg.d_model, cfg.n_layers, cfg.teacher_dim, cfg.dropout) == (384, 4, 960, 0.1)
    small = build_model_config({"architecture": {"d_model": 32, "q_heads": 4, "kv_heads": 2}}, 64, "tiny")
    assert (small.teacher_dim, small.teacher) == (64, "tiny")
    with pytest.raises(ValueError, match=r"variants\.v\.preset ProtHash-V2-512 is built for teacher_dim 1152.*960"):
        build_model_config({"preset": "ProtHash-V2-512"}, 960, key="variants.v")
    with pytest.raises(ValueError, match=r"architecture: unknown keys width"):
        build_model_config({"architecture": {"width": 3}}, 64)


# --- adapter over the teacher cache ----------------------------------------------------------
@pytest.fixture
def fake_cache(teacher_data, tmp_path) -> tuple[Path, Path]:
    """A sequences.parquet (rows in another order than the cache's) plus a teacher cache of the
    in-memory targets (fp32, per-residue targets included), in shards of 16."""
    from benchmarks.synthetic_cache import write_cache, write_sequences

    train_data, test_data = teacher_data
    ids = train_data.ids + test_data.ids
    seqs = train_data.sequences + test_data.sequences
    splits = ["train"] * len(train_data) + ["test"] * len(test_data)
    parquet = write_sequences(tmp_path / "sequences.parquet", ids[::-1], seqs[::-1], splits[::-1])
    tokens = dict(zip(ids, train_data.token_targets + test_data.token_targets))
    vectors = {p: np.concatenate([train_data.targets[p], test_data.targets[p]]) for p in ("cls", "mean")}
    shards = ((ids[a:b], seqs[a:b], splits[a:b], {p: v[a:b] for p, v in vectors.items()})
              for a, b in ((a, a + 16) for a in range(0, len(ids), 16)))
    write_cache(tmp_path / "cache", shards, dim=64, max_length=MAX_LENGTH, store_dtype="fp32",
                token_vectors={i: t.numpy() for i, t in tokens.items()}, teacher="tiny_random")
    return parquet, tmp_path / "cache"


def test_distill_from_cache_trains_the_variant(fake_cache, tmp_path):
    parquet, cache_dir = fake_cache
    variant = {
        "architecture": {"d_model": 32, "q_heads": 4, "kv_heads": 2, "n_layers": 1, "context_length": 64},
        "training": {"objective": "tokens", "max_steps": 3, "batch_tokens": 400, "eval_every": 3},
        "qat": {"enabled": False},
    }
    summary = distill_from_cache(parquet, cache_dir, variant, tmp_path / "m", tmp_path / "c", tmp_path / "tb", "cpu")
    assert (summary["n_train"], summary["n_test"], summary["steps"], summary["max_length"]) == (36, 12, 3, MAX_LENGTH)
    model = ProtHash.from_pretrained(tmp_path / "m")
    assert (model.config.teacher_dim, model.config.teacher, model.config.n_layers) == (64, "tiny_random", 1)
    assert math.isfinite(summary["heldout_cosine_final"]["tokens"])
    assert not (tmp_path / "c").exists()  # checkpoints and the target store go once the model is written


def test_distill_from_cache_refuses_another_max_length(fake_cache, tmp_path):
    parquet, cache_dir = fake_cache
    variant = {"architecture": {"d_model": 32, "q_heads": 4, "kv_heads": 2}, "training": {"max_length": 100}}
    with pytest.raises(ValueError, match=rf"variants\.tiny\.training\.max_length is 100 .*max_length {MAX_LENGTH}"):
        distill_from_cache(parquet, cache_dir, variant, tmp_path / "m", tmp_path / "c", tmp_path / "tb", "cpu",
                           variant_name="tiny")
