"""ProtHash student: presets, rotary positions, pooling, padding, save/load and checkpointing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from protkit.models.prothash.config import PRESETS, ProtHashConfig
from protkit.models.prothash.model import ProtHash
from protkit.sequences.tokenize import PAD_ID, encode_batch, encode_one

TINY = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64, context_length=256)
SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSEQ", "ACDEFGHIKLMNPQRSTVWYXBZUO", "mk*TA"]

# Published parameter counts of the ProtHash models.
PUBLISHED_PARAMS = {
    "ProtHash-V2-384-Tiny": 4.2e6,
    "ProtHash-V2-384": 10e6,
    "ProtHash-V2-512-Tiny": 7.4e6,
    "ProtHash-V2-512": 18e6,
    "ProtHash-384-Tiny": 5e6,
    "ProtHash-384": 11e6,
    "ProtHash-512-Tiny": 8.5e6,
    "ProtHash-512": 19e6,
}


def tiny_model(seed: int = 0, **changes) -> ProtHash:
    config = ProtHashConfig(**{**TINY.to_dict(), **changes})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProtHash(config).eval()


def rel_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_preset_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = ProtHash(PRESETS[name])
    assert abs(model.num_params / PUBLISHED_PARAMS[name] - 1) <= 0.05, f"{name}: {model.num_params:,} parameters"
    assert PRESETS[name].positions == ("absolute" if "V2" not in name else "rotary")
    assert PRESETS[name].teacher_dim == (960 if "-384" in name else 1152)


def test_rotary_base_formula() -> None:
    """base = ceil((context / (2 pi)) ** (d / (d - 2))), d the head width."""
    assert PRESETS["ProtHash-V2-384"].head_dim == 24 and PRESETS["ProtHash-V2-384"].rotary_base == 552
    assert PRESETS["ProtHash-V2-512"].head_dim == 32 and PRESETS["ProtHash-V2-512"].rotary_base == 480
    config = ProtHashConfig(d_model=64, q_heads=4, kv_heads=2, context_length=1024)
    assert config.rotary_base == math.ceil((1024 / (2 * math.pi)) ** (16 / 14))
    rotary = ProtHash(config).blocks[0].attention.rotary
    expected = 1.0 / config.rotary_base ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16)
    assert torch.allclose(rotary.inv_freq, expected)


def test_rotary_scores_depend_on_relative_position_only() -> None:
    rotary = tiny_model().blocks[0].attention.rotary
    generator = torch.Generator().manual_seed(0)
    q_vec, k_vec = torch.randn(2, 8, generator=generator)
    L = 40
    q = q_vec.expand(1, 1, L, 8).clone()  # (B, H, L, Dh): the same query at every position
    k = k_vec.expand(1, 1, L, 8).clone()
    q_rot, k_rot = rotary(q, k)
    scores = q_rot[0, 0] @ k_rot[0, 0].T  # (L, L)
    for offset in (0, 3, 17):
        diagonal = torch.diagonal(scores, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    assert not torch.allclose(scores[0, 0], scores[0, 3])


def test_absolute_positions_have_a_table_and_no_rotary() -> None:
    model = tiny_model(positions="absolute")
    assert model.position_embeddings.weight.shape == (TINY.context_length, TINY.d_model)
    assert model.blocks[0].attention.rotary is None
    assert tiny_model().position_embeddings is None


@pytest.mark.parametrize("positions", ["rotary", "absolute"])
def test_embedding_shapes(positions: str) -> None:
    model = tiny_model(positions=positions)
    batch = encode_batch(SEQUENCES)
    with torch.no_grad():
        for pooling in ("cls", "mean"):
            assert model.embed_native(batch.input_ids, batch.attention_mask, pooling).shape == (4, TINY.d_model)
            assert model.embed_teacher(batch.input_ids, batch.attention_mask, pooling).shape == (4, TINY.teacher_dim)
        native = model.embed_native(batch.input_ids, batch.attention_mask, "tokens")
        teacher = model.embed_teacher(batch.input_ids, batch.attention_mask, "tokens")
    residues = [len(encode_one(s)) - 2 for s in SEQUENCES]
    assert [t.shape for t in native] == [(n, TINY.d_model) for n in residues]
    assert [t.shape for t in teacher] == [(n, TINY.teacher_dim) for n in residues]


def test_mean_and_max_pooling_are_over_residues_only() -> None:
    model = tiny_model()
    batch = encode_batch(SEQUENCES)
    with torch.no_grad():
        hidden = model(batch.input_ids, batch.attention_mask)  # (B, L, D)
        mean = model.embed_native(batch.input_ids, batch.attention_mask, "mean")
        cls = model.embed_native(batch.input_ids, batch.attention_mask, "cls")
        tokens = model.embed_native(batch.input_ids, batch.attention_mask, "tokens")
        maximum = model.embed_native(batch.input_ids, batch.attention_mask, "max")
        teacher_mean = model.embed_teacher(batch.input_ids, batch.attention_mask, "mean")
    for row, sequence in enumerate(SEQUENCES):
        n = len(encode_one(sequence))  # CLS + residues + EOS
        residues = hidden[row, 1 : n - 1]  # drop CLS (0), EOS (n - 1) and padding (n ...)
        assert torch.allclose(mean[row], residues.mean(dim=0), atol=1e-6)
        assert torch.equal(tokens[row], residues)
        assert torch.equal(cls[row], hidden[row, 0])
        assert torch.equal(maximum[row], residues.max(dim=0).values)
        assert torch.allclose(teacher_mean[row], model.adapter(residues).mean(dim=0), atol=1e-5)
        assert not torch.allclose(mean[row], hidden[row, :n].mean(dim=0), atol=1e-4)


def test_unknown_pooling() -> None:
    batch = encode_batch(SEQUENCES)
    expected = "unknown pooling 'mode'; choose from cls, mean, max, std, var, median, norm, tokens"
    with pytest.raises(ValueError, match=expected):
        tiny_model().embed_native(batch.input_ids, batch.attention_mask, "mode")


@pytest.mark.parametrize("positions", ["rotary", "absolute"])
def test_batch_equals_alone(positions: str) -> None:
    """The key-padding mask makes a sequence's vectors independent of the batch it is in."""
    model = tiny_model(positions=positions)
    batch = encode_batch(SEQUENCES)
    assert (batch.input_ids == PAD_ID).sum() > 0
    with torch.no_grad():
        together = model(batch.input_ids, batch.attention_mask)  # (B, L, D)
        pooled = model.embed_teacher(batch.input_ids, batch.attention_mask, "mean")
        assert torch.isfinite(together).all()  # padded positions included
        for row, sequence in enumerate(SEQUENCES):
            alone_ids = encode_batch([sequence]).input_ids
            alone = model(alone_ids)[0]  # (L_i, D)
            assert rel_error(together[row, : len(alone)], alone) <= 1e-5, f"{positions} row {row}"
            assert rel_error(pooled[row], model.embed_teacher(alone_ids, pooling="mean")[0]) <= 1e-5


def test_context_length_is_enforced() -> None:
    ids = encode_batch(["A" * 300]).input_ids
    with pytest.raises(ValueError, match="302 tokens exceeds the context length 256"):
        tiny_model()(ids)


@pytest.mark.parametrize("positions", ["rotary", "absolute"])
def test_save_and_load_round_trip(tmp_path: Path, positions: str) -> None:
    model = tiny_model(seed=3, positions=positions)
    model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "model" / "config.json").read_text()) == model.config.to_dict()
    loaded = ProtHash.from_pretrained(tmp_path / "model")
    assert loaded.config == model.config and not loaded.training
    batch = encode_batch(SEQUENCES)
    with torch.no_grad():
        assert torch.equal(loaded(batch.input_ids, batch.attention_mask), model(batch.input_ids, batch.attention_mask))
        assert torch.equal(
            loaded.embed_teacher(batch.input_ids, batch.attention_mask), model.embed_teacher(batch.input_ids, batch.attention_mask)
        )


def test_from_pretrained_hub_id_uses_huggingface_hub(offline_hub, tmp_path: Path) -> None:
    model = tiny_model(seed=4)
    model.save_pretrained(tmp_path / "saved")
    offline_hub(
        "someone/prothash-test",
        {name: tmp_path / "saved" / name for name in ("config.json", "model.safetensors")},
    )
    loaded = ProtHash.from_pretrained("someone/prothash-test")
    batch = encode_batch(SEQUENCES)
    with torch.no_grad():
        assert torch.equal(loaded(batch.input_ids, batch.attention_mask), model(batch.input_ids, batch.attention_mask))


def test_config_validation_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown ProtHashConfig keys: colour"):
        ProtHashConfig.from_dict({**TINY.to_dict(), "colour": "blue"})
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by q_heads \(4\)"):
        ProtHashConfig(d_model=30, q_heads=4, kv_heads=2)
    with pytest.raises(ValueError, match=r"q_heads \(4\) must be a multiple of kv_heads \(3\)"):
        ProtHashConfig(d_model=32, q_heads=4, kv_heads=3)
    with pytest.raises(ValueError, match="positions must be 'rotary' or 'absolute'"):
        ProtHashConfig(positions="alibi")
    assert ProtHashConfig.from_dict(TINY.to_dict()) == TINY


@pytest.mark.parametrize("positions", ["rotary", "absolute"])
def test_activation_checkpointing_gives_same_gradients(positions: str) -> None:
    batch = encode_batch(SEQUENCES)
    gradients, block_calls = [], []
    for checkpointing in (False, True):
        model = tiny_model(seed=5, positions=positions, activation_checkpointing=checkpointing).train()
        calls = []
        model.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
        target = torch.randn(len(SEQUENCES), TINY.teacher_dim, generator=torch.Generator().manual_seed(0))
        loss = (model.embed_teacher(batch.input_ids, batch.attention_mask, "mean") - target).square().mean()
        loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
        block_calls.append(len(calls))
    assert block_calls == [1, 2]  # checkpointing recomputes the block during the backward pass
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize(("settings", "message"), [
    ({"q_heads": -4}, "q_heads must be positive, got -4"),
    ({"kv_heads": 0}, "kv_heads must be positive, got 0"),
    ({"d_model": "64"}, "d_model must be an integer, got '64'"),
    ({"n_layers": 2.5}, "n_layers must be an integer, got 2.5"),
    ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
    ({"d_model": 64, "q_heads": 32, "kv_heads": 4}, "rotary positions need an even head width of at least 4"),
])
def test_bad_settings_are_refused_before_any_allocation(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProtHashConfig(**{"d_model": 64, "q_heads": 4, "kv_heads": 2, **settings})


def test_a_model_larger_than_memory_is_refused_before_allocating() -> None:
    config = ProtHashConfig(d_model=64, q_heads=4, kv_heads=2, n_layers=100_000_000)
    assert config.parameter_count > 2e12  # 11 TB of fp32 weights
    with pytest.raises(ValueError, match=r"ProtHash: [\d,]+ parameters need about [\d,.]+ GiB, more than this machine's"):
        ProtHash(config)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_is_the_models(name: str) -> None:
    assert PRESETS[name].parameter_count == ProtHash(PRESETS[name]).num_params


def test_a_checkpoint_whose_model_exceeds_memory_is_refused_naming_its_config(tmp_path: Path) -> None:
    from protkit.models.prothash.checkpoint import ModelFormatError
    from protkit.models.prothash.model import load_pretrained_dir

    small = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=1, teacher_dim=64)
    ProtHash(small).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layers": 100_000_000}))
    with pytest.raises(ModelFormatError, match=r"config\.json: ProtHash: [\d,]+ parameters need about"):
        load_pretrained_dir(tmp_path)
