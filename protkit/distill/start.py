"""Where a distillation starts: residual branches at zero and the adapter fitted by ridge regression.

With both, the step-0 student is the composition-linear student (docs/design.md, "How a
distillation starts"), and training only has to add what depends on context.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch

from protkit.distill.config import TrainConfig
from protkit.distill.objectives import EncodedSplit
from protkit.models.prothash.model import ProtHash
from protkit.sequences.batching import length_batches
from protkit.sequences.pooling import pool

ADAPTER_BLOCK_BYTES = 16 << 20  # float64 features + targets the adapter fit holds at once



@torch.no_grad()
def zero_residual_branches(model: ProtHash) -> None:
    """Zero the last projection of every attention and feed-forward branch (ReZero/Fixup-style start).

    Every block is then an identity, so the step-0 student maps each residue to its token embedding
    and its mean-pooled vector is linear in amino-acid composition: with the ridge-fit adapter the
    student starts at the composition baseline and training adds what depends on context. The zeroed
    projections get gradients at once, the weights before them from the second step."""
    for block in model.blocks:
        block.attention.out_proj.weight.zero_()
        block.feed_forward.linear2.weight.zero_()


@torch.no_grad()
def fit_adapter(model: ProtHash, enc: EncodedSplit, cfg: TrainConfig, device: torch.device, ridge: float = 1e-3) -> None:
    """Set the adapter (native -> teacher width) to the ridge least-squares map from the step-0
    student's pooled native vectors to the teacher's pooled targets, over the training split.

    A linear-probe start: training then begins from the best linear read-out of the random encoder
    instead of a random projection, which shortens distillation (pooled objective only; no RNG used,
    so resuming and ``untrained_student`` are unaffected). An adapter without a bias
    (``adapter_bias: false``) is fitted without an intercept. Features and targets are gathered in
    blocks of ``ADAPTER_BLOCK_BYTES``: a split that fits in one block is solved from its matrices,
    a larger one from the running sums ``X^T X``, ``X^T Y``, ``sum X``, ``sum Y`` (float64)."""
    if cfg.objective != "pooled" or not isinstance(model.adapter, torch.nn.Linear):
        return
    was_training = model.training
    model.eval()
    has_bias = model.adapter.bias is not None
    blocks = _adapter_blocks(model, enc, cfg, device)
    x, y = next(blocks)  # (N, d), (N, T)
    second = next(blocks, None)
    if second is None:
        if has_bias:  # centred fit; the intercept goes to the bias
            x_mean, y_mean = x.mean(0), y.mean(0)
        else:  # no bias (ProtHash's adapter): no intercept, (X^T X + lambda I) W = X^T Y on raw features
            x_mean, y_mean = x.new_zeros(x.shape[1]), y.new_zeros(y.shape[1])
        xc, yc = x - x_mean, y - y_mean
        gram, cross = xc.T @ xc, xc.T @ yc  # (d, d), (d, T)
    else:
        n, x_sum, y_sum, gram, cross = 0, 0.0, 0.0, 0.0, 0.0
        for xb, yb in itertools.chain([(x, y), second], blocks):
            n, x_sum, y_sum = n + len(xb), x_sum + xb.sum(0), y_sum + yb.sum(0)
            gram, cross = gram + xb.T @ xb, cross + xb.T @ yb
        x_mean, y_mean = x_sum / n, y_sum / n
        if has_bias:  # centred moments
            gram, cross = gram - n * torch.outer(x_mean, x_mean), cross - n * torch.outer(x_mean, y_mean)
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    weight = torch.linalg.solve(gram, cross)  # (d, T)
    model.adapter.weight.copy_(weight.T.float())
    if has_bias:
        model.adapter.bias.copy_((y_mean - x_mean @ weight).float())
    model.train(was_training)


def _adapter_blocks(
    model: ProtHash, enc: EncodedSplit, cfg: TrainConfig, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(features (n, d), targets (n, T))`` float64 blocks of pooled step-0 vectors and their
    targets, each pooling of each batch in turn, about ``ADAPTER_BLOCK_BYTES`` each."""
    width = model.config.d_model + model.config.teacher_dim
    limit = max(1, ADAPTER_BLOCK_BYTES // (8 * width))
    features: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    held = 0
    for rows in length_batches(enc.lengths, cfg.batch_tokens, cfg.batch_size):
        batch = enc.batch(rows, device)
        hidden = model(batch.input_ids, batch.attention_mask).float()  # (B, L, d)
        for p in cfg.poolings:
            features.append(pool(hidden, batch.input_ids, batch.attention_mask, p).double().cpu())  # (B, d)
            targets.append(enc.pooled_targets(rows, p, torch.device("cpu")).double())  # (B, T)
            held += len(rows)
        if held >= limit:
            yield torch.cat(features), torch.cat(targets)
            features, targets, held = [], [], 0
    if features:
        yield torch.cat(features), torch.cat(targets)
