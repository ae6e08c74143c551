"""protkit.sequences.tokenize against esm's EsmSequenceTokenizer, batching, padding and truncation."""

from __future__ import annotations

import pytest
import torch
from esm.tokenization import EsmSequenceTokenizer
from esm.utils.constants.esm3 import SEQUENCE_VOCAB
from esm.utils.encoding import tokenize_sequence

from protkit.sequences.tokenize import CLS_ID, EOS_ID, PAD_ID, VOCAB, encode_batch, encode_one, pad_batch, residue_mask

# Text that leaves the fast path: lowercase, stop codons, whitespace, non-ASCII, esm's special
# strings and mask shorthand, chain breaks, and characters outside the vocabulary.
ODD_SEQUENCES = [
    "mktayiakqr",
    "MKTAyiakQR",
    "MKT*AYI*",
    "AC_DE_",
    "AC<mask>DEF",
    "<cls>MK<eos>T",
    "AB|CD|EF",
    "MK TA\tYI",
    "MKTé AYÅ",
    "1234MK",
    "X.-BZUO",
    "<unk><pad>A",
]


@pytest.fixture(scope="module")
def esm_tok() -> EsmSequenceTokenizer:
    return EsmSequenceTokenizer()


def reference(sequence: str, tokenizer: EsmSequenceTokenizer) -> list[int]:
    """esm's own ids for a sequence (CLS ... EOS)."""
    return tokenize_sequence(sequence, tokenizer, add_special_tokens=True).tolist()


def test_vocab_equals_esm(esm_tok: EsmSequenceTokenizer) -> None:
    assert list(VOCAB) == list(SEQUENCE_VOCAB)
    assert [esm_tok.convert_tokens_to_ids(t) for t in VOCAB] == list(range(len(VOCAB)))
    assert (CLS_ID, PAD_ID, EOS_ID) == (esm_tok.cls_token_id, esm_tok.pad_token_id, esm_tok.eos_token_id)


def test_identical_to_esm_on_every_shared_sequence(
    shared_records, shared_fastas, esm_tok: EsmSequenceTokenizer
) -> None:
    """All DeepLoc sequences, untruncated (up to 5,654 residues), tokenised one by one."""
    headers = sum(path.read_text().count(">") for path in shared_fastas)
    assert len(shared_records) == headers > 3000
    mismatched = [r.id for r in shared_records if encode_one(r.sequence) != reference(r.sequence, esm_tok)]
    assert not mismatched, f"{len(mismatched)} sequences tokenised differently from esm, e.g. {mismatched[:5]}"
    assert max(len(r.sequence) for r in shared_records) > 5000  # really untruncated


def test_batch_rows_equal_esm_on_shared_sequences(shared_records, esm_tok: EsmSequenceTokenizer) -> None:
    sequences = [r.sequence for r in shared_records[:64]]
    batch = encode_batch(sequences)
    for row, sequence in enumerate(sequences):
        ids = reference(sequence, esm_tok)
        assert batch.input_ids[row, : len(ids)].tolist() == ids
        assert int(batch.lengths[row]) == len(ids)


@pytest.mark.parametrize("sequence", ODD_SEQUENCES)
def test_odd_characters_fall_back_to_esm(sequence: str, esm_tok: EsmSequenceTokenizer) -> None:
    assert encode_one(sequence) == reference(sequence, esm_tok)


@pytest.mark.parametrize("sequence", ODD_SEQUENCES + ["MKTAYIAKQRQISFVKSHFSRQ"])
@pytest.mark.parametrize("max_length", [3, 4, 5, 7, 12])
def test_truncation_keeps_cls_and_eos(sequence: str, max_length: int, esm_tok: EsmSequenceTokenizer) -> None:
    """Truncation keeps esm's first ``max_length - 1`` tokens and closes with EOS."""
    full = reference(sequence, esm_tok)
    ids = encode_one(sequence, max_length)
    expected = full if len(full) <= max_length else full[: max_length - 1] + [EOS_ID]
    assert ids == expected
    assert ids[0] == CLS_ID and ids[-1] == EOS_ID
    assert len(ids) <= max_length


def test_truncation_of_long_real_sequences(shared_records, esm_tok: EsmSequenceTokenizer) -> None:
    long = [r.sequence for r in shared_records if len(r.sequence) > 1022][:20]
    assert long, "expected sequences over 1022 residues in the shared data"
    batch = encode_batch(long, max_length=1024)
    assert batch.input_ids.shape == (len(long), 1024)
    assert bool(batch.attention_mask.all())
    for row, sequence in enumerate(long):
        assert batch.input_ids[row].tolist() == reference(sequence[:1022], esm_tok)


def test_short_sequences_are_not_truncated() -> None:
    assert encode_one("MKT", max_length=5) == encode_one("MKT") == [CLS_ID, 20, 15, 11, EOS_ID]


@pytest.mark.parametrize("max_length", [0, 1, 2])
def test_max_length_too_small(max_length: int) -> None:
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        encode_one("MKT", max_length)


def test_batch_is_right_padded_with_mask() -> None:
    sequences = ["MKTAYIAK", "MK", "mkt*A"]
    batch = encode_batch(sequences)
    lengths = [len(encode_one(s)) for s in sequences]
    assert batch.input_ids.shape == batch.attention_mask.shape == (3, max(lengths))
    assert batch.input_ids.dtype == torch.long and batch.attention_mask.dtype == torch.bool
    for row, (sequence, length) in enumerate(zip(sequences, lengths)):
        assert batch.input_ids[row, :length].tolist() == encode_one(sequence)
        assert (batch.input_ids[row, length:] == PAD_ID).all()
        assert batch.attention_mask[row].tolist() == [True] * length + [False] * (max(lengths) - length)
    assert batch.lengths.tolist() == lengths
    assert torch.equal(batch.attention_mask, batch.input_ids != PAD_ID)


def test_batch_truncation_and_device_move() -> None:
    batch = encode_batch(["MKTAYIAKQR", "MK"], max_length=6)
    assert batch.input_ids.tolist() == [[CLS_ID, 20, 15, 11, 5, EOS_ID], [CLS_ID, 20, 15, EOS_ID, PAD_ID, PAD_ID]]
    moved = batch.to("cpu")
    assert torch.equal(moved.input_ids, batch.input_ids) and torch.equal(moved.attention_mask, batch.attention_mask)


def test_empty_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="zero sequences"):
        pad_batch([])


def test_residue_mask_excludes_special_tokens_and_padding() -> None:
    batch = encode_batch(["MKTA", "MK"])
    mask = residue_mask(batch.input_ids, batch.attention_mask)
    assert mask.tolist() == [
        [False, True, True, True, True, False],
        [False, True, True, False, False, False],
    ]
