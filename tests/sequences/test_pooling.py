"""protkit.sequences.pooling: std, var, median and norm (FastPLMs' ESM++ definitions) over residues only,
against numpy on a padded batch; CLS, EOS and padding never change them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protkit.sequences.pooling import (
    DISTRIBUTION_POOLINGS, EMBED_POOLINGS, POOLINGS, concatenated_name, pool, pooling_parts,
)  # fmt: skip
from protkit.sequences.tokenize import encode_batch

SEQUENCES = ["M", "MK", "MKTAY", "MKTAYI", "MKTAYIAKQR"]  # 1, 2, 5, 6 and 10 residues: odd and even counts


def numpy_pool(residues: np.ndarray, pooling: str) -> np.ndarray:
    """The pooling of one protein's residue vectors ``(n, D)`` in float64 numpy.  # (D,)"""
    if pooling == "std":
        return residues.std(axis=0)  # ddof=0: population
    if pooling == "var":
        return residues.var(axis=0)
    if pooling == "median":
        return np.sort(residues, axis=0)[(len(residues) - 1) // 2]  # the lower middle value
    if pooling == "norm":
        return np.linalg.norm(residues, ord=2, axis=0)
    raise ValueError(pooling)


@pytest.fixture(scope="module")
def batch():
    """A padded batch of :data:`SEQUENCES` and random hidden states ``(B, L, D)``."""
    tokens = encode_batch(SEQUENCES)
    hidden = torch.randn(*tokens.input_ids.shape, 16, generator=torch.Generator().manual_seed(0))
    return tokens, hidden


@pytest.mark.parametrize("pooling", DISTRIBUTION_POOLINGS)
def test_distribution_poolings_equal_numpy_over_residues(batch, pooling):
    tokens, hidden = batch
    got = pool(hidden, tokens.input_ids, tokens.attention_mask, pooling)
    assert got.shape == (len(SEQUENCES), 16) and got.dtype == torch.float32
    for row, sequence in enumerate(SEQUENCES):
        residues = hidden[row, 1 : 1 + len(sequence)].double().numpy()  # CLS at 0, EOS after the residues
        np.testing.assert_allclose(got[row].numpy(), numpy_pool(residues, pooling), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", DISTRIBUTION_POOLINGS)
def test_cls_eos_and_padding_never_change_them(batch, pooling):
    tokens, hidden = batch
    residues = torch.zeros_like(tokens.input_ids, dtype=torch.bool)
    for row, sequence in enumerate(SEQUENCES):
        residues[row, 1 : 1 + len(sequence)] = True
    noisy = hidden.masked_fill(~residues.unsqueeze(-1), 1e6)  # CLS, EOS, padding: huge
    noisy[0, 0, 0] = noisy[1, -1, 3] = float("nan")
    in_batch = pool(noisy, tokens.input_ids, tokens.attention_mask, pooling)
    np.testing.assert_array_equal(in_batch, pool(hidden, tokens.input_ids, tokens.attention_mask, pooling))
    for row, sequence in enumerate(SEQUENCES):  # a protein alone equals it inside the padded batch
        one = encode_batch([sequence])
        alone = pool(hidden[row : row + 1, : len(sequence) + 2], one.input_ids, one.attention_mask, pooling)
        np.testing.assert_allclose(alone[0], in_batch[row], rtol=1e-6, atol=1e-7)


def pooled(values: list[float], pooling: str) -> float:
    """One protein, one dimension: ``values`` as its residues.  # ()"""
    tokens = encode_batch(["A" * len(values)])
    hidden = torch.zeros(1, len(values) + 2, 1)
    hidden[0, 1:-1, 0] = torch.tensor(values)
    return pool(hidden, tokens.input_ids, tokens.attention_mask, pooling)[0, 0].item()


def test_median_of_odd_and_even_counts():
    assert pooled([3.0, 1.0, 2.0], "median") == 2.0
    assert pooled([4.0, 1.0, 3.0, 2.0], "median") == 2.0  # even: the lower of 2 and 3 (torch's nanmedian)
    assert pooled([-5.0], "median") == -5.0


def test_var_and_std_are_the_population_ones_and_norm_is_l2():
    assert pooled([1.0, 3.0], "var") == 1.0  # divided by n (2), not n - 1
    assert pooled([1.0, 3.0], "std") == 1.0
    assert pooled([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], "std") == pytest.approx(2.0)
    assert pooled([7.0, 7.0, 7.0], "var") == 0.0
    assert pooled([3.0, -4.0], "norm") == pytest.approx(5.0)


def test_half_precision_states_are_pooled_in_float32(batch):
    tokens, hidden = batch
    for pooling in DISTRIBUTION_POOLINGS:
        half = pool(hidden.half(), tokens.input_ids, tokens.attention_mask, pooling)
        assert half.dtype == torch.float32
        want = pool(hidden.half().float(), tokens.input_ids, tokens.attention_mask, pooling)
        np.testing.assert_array_equal(half, want)


def test_names():
    assert EMBED_POOLINGS == POOLINGS + DISTRIBUTION_POOLINGS == ("cls", "mean", "max", "std", "var", "median", "norm")
    assert concatenated_name(["mean", "std"]) == "mean+std"
    assert pooling_parts("mean+std") == ("mean", "std") and pooling_parts("max") == ("max",)
    with pytest.raises(ValueError, match="unknown pooling 'min'; choose from cls, mean, max, std, var, median, norm"):
        one = encode_batch(["A"])
        pool(torch.zeros(1, 3, 2), one.input_ids, one.attention_mask, "min")
