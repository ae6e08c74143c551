"""Training a ProtHash 1.0 (four-stage, ``architecture.family: v1``) student: the ``stages`` objective.

Each stage's output, through its adapter, is matched residue by residue to one teacher block's hidden
states, and the MLM head's logits to the teacher's (direction + magnitude losses,
:mod:`protkit.distill.stage_loss`, weights ``training.stage_weights`` and ``training.logits_weight``).
The targets come from the teacher cache (``training.stage_targets: cache``: the per-residue vectors a
cache built with ``stage_layers`` holds, read a batch at a time) or from the teacher itself, run beside
the student on every batch (``stage_targets: teacher``; the cache then only gives the splits). Both
give the same targets (the teacher masks padding, and the loss covers residues only: CLS and EOS,
which the cache does not store, are left out in both modes), so a student trains the same either way.

The student starts from its seeded random initialisation, as ProtHash 1.0's do. The held-out scores
logged during training are each stage's mean per-residue cosine to its teacher block (``stage1`` ..
``stage4``); the full table (CKA, MLM agreement) is :mod:`protkit.evaluate.stage_run`'s. The loop,
checkpoints and resume are :mod:`protkit.distill.loop`'s: a re-run resumes bit-identically on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from protkit.distill.checkpoints import training_settings
from protkit.distill.config import TrainConfig
from protkit.distill.loop import Objective, TrainingRun, prepare_training
from protkit.distill.objectives import DistillData, EncodedSplit, Rows
from protkit.distill.stage_loss import StageLossWeights, stage_loss
from protkit.io.atomic import write_json
from protkit.models.esmc.model import ESMC
from protkit.models.prothash_v1.config import StagedConfig
from protkit.models.prothash_v1.model import StagedProtHash
from protkit.sequences.batching import length_batches
from protkit.sequences.tokenize import TokenBatch, residue_mask
from protkit.teacher.read import StageTokenTargets
from protkit.teacher.stage_targets import stage_targets

Targets = tuple[list[torch.Tensor], torch.Tensor | None]  # per layer (B, L, D) float32; logits (B, L, 33) or None


class StageTargetSource(Protocol):
    """Where a batch's stage targets come from (on the batch's device, zero outside its residues)."""

    layers: tuple[int, ...]  # teacher blocks, one per stage

    def targets(self, rows: Rows, split: EncodedSplit, batch: TokenBatch) -> Targets: ...


@dataclass
class CachedStages:
    """Targets from a teacher cache built with ``stage_layers`` (residues only, placed after CLS)."""

    reader: StageTokenTargets  # its layers: one per stage, in stage order

    @property
    def layers(self) -> tuple[int, ...]:
        return self.reader.layers

    def targets(self, rows: Rows, split: EncodedSplit, batch: TokenBatch) -> Targets:
        ids = [split.data.name(int(i)) for i in rows]
        found = self.reader.get(ids)
        B, L = batch.input_ids.shape
        device = batch.input_ids.device

        def padded(per_row: list[torch.Tensor]) -> torch.Tensor:
            out = torch.zeros(B, L, per_row[0].shape[-1])  # (B, L, W)
            for b, tensor in enumerate(per_row):
                out[b, 1:1 + len(tensor)] = tensor  # residues after CLS
            return out.to(device)

        hidden = [padded([found[i].layers[layer] for i in ids]) for layer in self.layers]
        logits = padded([found[i].logits for i in ids]) if self.reader.logits else None
        return hidden, logits


@dataclass
class TeacherStages:
    """Targets from the teacher, run on each batch beside the student (same device)."""

    teacher: ESMC
    layers: tuple[int, ...]

    def targets(self, rows: Rows, split: EncodedSplit, batch: TokenBatch) -> Targets:
        out = stage_targets(self.teacher, batch, self.layers)
        return [h.float() for h in out.hidden], out.logits.float()


def student_outputs(model: StagedProtHash, batch: TokenBatch, autocast: bool) -> Targets:
    """The student's stages through their adapters and its MLM logits (None without a head)."""
    device = batch.input_ids.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        native = model.stages(batch.input_ids, batch.attention_mask)  # 4 x (B, L, d_model)
        adapted = [adapter(z) for adapter, z in zip(model.adapters, native)]  # 4 x (B, L, teacher_dim)
        logits = model.mlm_head(native[-1]) if model.mlm_head is not None else None  # (B, L, 33)
    return adapted, logits


def staged_loss(model: StagedProtHash, split: EncodedSplit, source: StageTargetSource, rows: Rows,
                cfg: TrainConfig, device: torch.device, autocast: bool) -> torch.Tensor:
    """The stages objective on one micro-batch (a scalar)."""
    batch = split.batch(rows, device)
    teacher, teacher_logits = source.targets(rows, split, batch)
    adapted, logits = student_outputs(model, batch, autocast)
    with_logits = logits is not None and teacher_logits is not None and cfg.logits_weight > 0
    weights = StageLossWeights(stages=cfg.stage_weights, logits=cfg.logits_weight)
    mask = residue_mask(batch.input_ids, batch.attention_mask)  # (B, L)
    return stage_loss(adapted, teacher, mask, logits if with_logits else None,
                      teacher_logits if with_logits else None, weights).loss


@torch.no_grad()
def stage_cosines(model: StagedProtHash, split: EncodedSplit, source: StageTargetSource, cfg: TrainConfig,
                  device: torch.device, autocast: bool) -> dict[str, float]:
    """Each stage's mean per-residue cosine to its teacher block over ``split`` (eval mode)."""
    was_training = model.training
    model.eval()
    sums, residues = torch.zeros(len(source.layers), dtype=torch.float64), 0
    for rows in length_batches(split.lengths, cfg.batch_tokens, cfg.batch_size):
        batch = split.batch(rows, device)
        teacher, _ = source.targets(rows, split, batch)
        adapted, _ = student_outputs(model, batch, autocast)
        mask = residue_mask(batch.input_ids, batch.attention_mask)  # (B, L)
        for s, (pred, target) in enumerate(zip(adapted, teacher)):
            sums[s] += F.cosine_similarity(pred.float()[mask], target[mask], dim=-1).double().sum().cpu()
        residues += int(mask.sum())
    model.train(was_training)
    return {f"stage{s + 1}": float(total / max(residues, 1)) for s, total in enumerate(sums)}


def train_staged(
    model_config: StagedConfig,
    train_config: TrainConfig,
    train_data: DistillData,
    test_data: DistillData,
    source: StageTargetSource | Callable[[torch.device], StageTargetSource],
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    tensorboard_dir: str | Path,
    device: str | torch.device = "auto",
    *,
    on_step: Callable[[int], None] | None = None,
    config_key: str = "variants.<name>",
) -> dict:
    """Distil into a new ProtHash 1.0 student, resuming from ``checkpoint_dir`` when it holds a
    checkpoint; like :func:`protkit.distill.loop.train`, with the stage targets of ``source`` (or of
    ``source(device)``, to build it on the training device). ``train_data.data_sha256`` must fingerprint
    the sequences and the targets' origin (a resume under another cache or teacher is refused).
    Writes the model and ``training_summary.json`` (with ``teacher_layers``) into ``out_dir``."""
    cfg = train_config
    device, autocast, max_length, train_enc, test_enc = prepare_training(model_config, cfg, train_data, test_data,
                                                                         device, config_key)
    source = source(device) if callable(source) else source
    torch.manual_seed(cfg.seed)
    model = StagedProtHash(model_config)
    settings = {**training_settings(model_config, cfg, None, train_data), "teacher_layers": list(source.layers)}
    run = TrainingRun(model, cfg, settings, Path(checkpoint_dir), device)
    objective = Objective(
        loss=lambda rows: staged_loss(model, train_enc, source, rows, cfg, device, autocast),
        heldout=lambda: stage_cosines(model, test_enc, source, cfg, device, autocast),
        lengths=train_enc.lengths, residues=train_enc.residues,
    )
    summary = run.train(objective, out_dir, tensorboard_dir, on_step)
    summary.update(n_train=len(train_data), n_test=len(test_data), max_length=max_length,
                   teacher_layers=list(source.layers), stage_targets=cfg.stage_targets)
    write_json(Path(out_dir) / "training_summary.json", summary)
    return summary

