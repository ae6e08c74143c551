"""protkit's ESMC against esm's reference implementation, on real DeepLoc sequences.

Parity is measured per sequence over every non-padding position (CLS, residues and EOS; padding
is excluded because esm lets padding attend to padding while protkit masks it out), on identical
seeded random weights loaded with ``strict=True``, in fp32, on padded batches.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pytest
import torch
from esm.models.esmc import ESMC as EsmESMC
from esm.tokenization import EsmSequenceTokenizer

from protkit.models.esmc.model import ESMC, ESMC_PRESETS, ESMCConfig
from protkit.sequences.batching import chunks, token_budget_batches
from protkit.sequences.fasta import FastaRecord
from protkit.sequences.tokenize import PAD_ID, TokenBatch, encode_batch

SMALL = ESMCConfig(d_model=128, n_heads=2, n_layers=3)
MAX_RESIDUES = 1022  # + CLS + EOS = 1024 tokens
REL_TOL, ABS_TOL = 1e-5, 1e-4


def esm_reference(config: ESMCConfig, seed: int) -> EsmESMC:
    """esm's ESMC with seeded random weights; 1-D parameters (LayerNorm scales and biases, head
    biases) are jittered so that they are not the trivial ones and zeros."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EsmESMC(
            config.d_model, config.n_heads, config.n_layers, tokenizer=EsmSequenceTokenizer(), use_flash_attn=False
        )
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.ndim == 1:
                    parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def protkit_copy(reference: EsmESMC, config: ESMCConfig) -> ESMC:
    model = ESMC(config)
    model.load_state_dict(reference.state_dict(), strict=True)
    return model.eval()


def parity_sample(records: list[FastaRecord], n: int, seed: int) -> list[str]:
    """A fixed random sample, one in eight longer than 1022 residues (truncated to 1022), shuffled so
    that every batch mixes lengths and carries padding."""
    rng = random.Random(seed)
    long = [r for r in records if len(r.sequence) > MAX_RESIDUES]
    short = [r for r in records if len(r.sequence) <= MAX_RESIDUES]
    picked = rng.sample(long, n // 8) + rng.sample(short, n - n // 8)
    rng.shuffle(picked)
    return [r.sequence[:MAX_RESIDUES] for r in picked]


@dataclass
class Errors:
    """Per-sequence relative L2 and max-abs errors of one output."""

    rel: list[float]
    abs: list[float]

    def add(self, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        difference = (ours - theirs).double()
        self.rel.append(float(difference.norm() / theirs.double().norm()))
        self.abs.append(float(difference.abs().max()))

    def summary(self, name: str) -> str:
        return f"{name}: max rel L2 {max(self.rel):.2e}, mean rel L2 {sum(self.rel) / len(self.rel):.2e}, max abs {max(self.abs):.2e}"


def assert_parity(config: ESMCConfig, sequences: list[str], batches: list[list[int]], label: str) -> None:
    """Compare last_hidden_state, logits and hidden states of both models sequence by sequence;
    ``batches`` lists the indices of ``sequences`` that go together into one padded batch."""
    reference = esm_reference(config, seed=0)
    model = protkit_copy(reference, config)
    errors = {name: Errors([], []) for name in ("last_hidden_state", "logits", "hidden_states")}
    padded_rows = 0
    start = time.perf_counter()
    with torch.no_grad():
        for indices in batches:
            batch = encode_batch([sequences[i] for i in indices])
            ours = model(batch.input_ids, batch.attention_mask, output_hidden_states=True)
            theirs = reference(sequence_tokens=batch.input_ids)  # esm builds its mask from PAD
            assert torch.isfinite(ours.last_hidden_state).all() and torch.isfinite(ours.logits).all()
            padded_rows += int((~batch.attention_mask).any(dim=1).sum())
            for row, keep in enumerate(batch.attention_mask):  # keep: (L,) non-padding positions
                errors["last_hidden_state"].add(ours.last_hidden_state[row, keep], theirs.embeddings[row, keep])
                errors["logits"].add(ours.logits[row, keep], theirs.sequence_logits[row, keep])
                ours_layers = torch.stack(ours.hidden_states)[:, row, keep]  # (n_layers, L_i, D)
                errors["hidden_states"].add(ours_layers, theirs.hidden_states[:, row, keep])
    elapsed = time.perf_counter() - start
    lengths = [len(s) for s in sequences]
    print(
        f"\n[ESMC parity {label}] d_model={config.d_model} heads={config.n_heads} layers={config.n_layers}: "
        f"{len(sequences)} sequences ({min(lengths)}-{max(lengths)} residues, {padded_rows} padded rows), "
        f"{len(batches)} batches of up to {max(map(len, batches))}, {elapsed:.1f} s"
    )
    for name, error in errors.items():
        print(f"  {error.summary(name)}")
    assert padded_rows >= len(sequences) // 2, "the sample should exercise padding"
    for name in ("last_hidden_state", "logits"):
        assert max(errors[name].rel) <= REL_TOL, errors[name].summary(name)
        assert max(errors[name].abs) <= ABS_TOL, errors[name].summary(name)
    assert max(errors["hidden_states"].rel) <= REL_TOL, errors["hidden_states"].summary("hidden_states")


def test_parity_small_config(shared_records: list[FastaRecord]) -> None:
    sequences = parity_sample(shared_records, n=96, seed=0)
    assert max(len(s) for s in sequences) == MAX_RESIDUES
    batches = [list(chunk) for chunk in chunks(range(len(sequences)), 8)]  # mixed lengths: much padding
    assert_parity(SMALL, sequences, batches, label="small")


@pytest.mark.slow
def test_parity_esmc_300m(shared_records: list[FastaRecord]) -> None:
    """The real 300M architecture (random weights), 64 sequences in length-sorted batches of up to
    8 x 1024 tokens, as the pipeline batches them; several minutes on 2 cores."""
    sequences = parity_sample(shared_records, n=64, seed=1)
    batches = token_budget_batches([len(s) + 2 for s in sequences], max_tokens=8 * 1024, max_batch_size=8)
    assert_parity(ESMC_PRESETS["esmc_300m"], sequences, batches, label="esmc_300m")


@pytest.mark.parametrize("name", list(ESMC_PRESETS))
def test_presets_have_esm_parameter_names_and_shapes(name: str) -> None:
    config = ESMC_PRESETS[name]
    with torch.device("meta"):
        ours = ESMC(config).state_dict()
        theirs = EsmESMC(
            config.d_model, config.n_heads, config.n_layers, tokenizer=EsmSequenceTokenizer(), use_flash_attn=False
        ).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert config.d_head == 64


@pytest.fixture(scope="module")
def small_model() -> ESMC:
    return protkit_copy(esm_reference(SMALL, seed=3), SMALL)


@pytest.fixture(scope="module")
def mixed_batch(shared_records: list[FastaRecord]) -> tuple[list[str], TokenBatch]:
    """Three real sequences of very different lengths, shortest first."""
    by_length = sorted((r.sequence for r in shared_records if len(r.sequence) <= 600), key=len)
    sequences = [by_length[0], by_length[len(by_length) // 2], by_length[-1]]
    return sequences, encode_batch(sequences)


def test_padding_invariance(small_model: ESMC, mixed_batch: tuple[list[str], TokenBatch]) -> None:
    """Each sequence alone equals the same sequence inside a padded batch with longer ones."""
    sequences, batch = mixed_batch
    with torch.no_grad():
        together = small_model(batch.input_ids, batch.attention_mask, output_hidden_states=True)
        for row, sequence in enumerate(sequences):
            alone = small_model(encode_batch([sequence]).input_ids, output_hidden_states=True)
            n = alone.last_hidden_state.shape[1]
            assert (batch.input_ids[row, n:] == PAD_ID).all()
            pairs = [(alone.last_hidden_state, together.last_hidden_state), (alone.logits, together.logits)]
            pairs += list(zip(alone.hidden_states, together.hidden_states))
            for single, batched in pairs:
                rel = (batched[row, :n] - single[0]).norm() / single[0].norm()
                assert rel <= REL_TOL, f"row {row} ({n} tokens): relative error {rel:.2e} against the batch"


def test_padded_rows_are_finite(small_model: ESMC, mixed_batch: tuple[list[str], TokenBatch]) -> None:
    _, batch = mixed_batch
    assert (~batch.attention_mask).sum() > 500
    with torch.no_grad():
        out = small_model(batch.input_ids, batch.attention_mask, output_hidden_states=True)
    for tensor in (out.last_hidden_state, out.logits, *out.hidden_states):
        assert torch.isfinite(tensor).all()


def test_default_mask_is_not_pad(small_model: ESMC, mixed_batch: tuple[list[str], TokenBatch]) -> None:
    _, batch = mixed_batch
    with torch.no_grad():
        explicit = small_model(batch.input_ids, batch.attention_mask)
        default = small_model(batch.input_ids)
    assert torch.equal(explicit.last_hidden_state, default.last_hidden_state)


def test_hidden_states_only_when_asked(small_model: ESMC, mixed_batch: tuple[list[str], TokenBatch]) -> None:
    _, batch = mixed_batch
    with torch.no_grad():
        plain = small_model(batch.input_ids, batch.attention_mask)
        full = small_model(batch.input_ids, batch.attention_mask, output_hidden_states=True)
    assert plain.hidden_states is None
    assert len(full.hidden_states) == SMALL.n_layers
    B, L = batch.input_ids.shape
    assert all(h.shape == (B, L, SMALL.d_model) for h in full.hidden_states)
    assert plain.logits.shape == (B, L, SMALL.vocab_size)
    # The last hidden state is the final block's output after the final LayerNorm.
    assert torch.equal(small_model.transformer.norm(full.hidden_states[-1]), full.last_hidden_state)
    assert not torch.allclose(full.hidden_states[0], full.hidden_states[-1])


def test_bf16_forward_on_cpu_is_close_to_fp32(
    small_model: ESMC, mixed_batch: tuple[list[str], TokenBatch]
) -> None:
    _, batch = mixed_batch
    bf16 = protkit_copy(esm_reference(SMALL, seed=3), SMALL).to(torch.bfloat16)
    with torch.no_grad():
        reference = small_model(batch.input_ids, batch.attention_mask).last_hidden_state
        low = bf16(batch.input_ids, batch.attention_mask).last_hidden_state
    assert low.dtype == torch.bfloat16
    for row, keep in enumerate(batch.attention_mask):
        expected, got = reference[row, keep], low[row, keep].float()
        rel = float((got - expected).norm() / expected.norm())
        assert torch.isfinite(got).all() and rel < 5e-2, f"row {row}: bf16 relative error {rel:.3f}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(small_model: ESMC, mixed_batch: tuple[list[str], TokenBatch]) -> None:
    _, batch = mixed_batch
    with torch.no_grad():
        cpu = small_model(batch.input_ids, batch.attention_mask).last_hidden_state
        for dtype, tolerance in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
            gpu_model = protkit_copy(esm_reference(SMALL, seed=3), SMALL).to("cuda", dtype)
            gpu = gpu_model(batch.input_ids.cuda(), batch.attention_mask.cuda()).last_hidden_state.float().cpu()
            for row, keep in enumerate(batch.attention_mask):
                rel = float((gpu[row, keep] - cpu[row, keep]).norm() / cpu[row, keep].norm())
                assert rel < tolerance, f"{dtype} row {row}: CUDA vs CPU relative error {rel:.2e}"
