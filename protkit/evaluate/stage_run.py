"""Evaluation of a ProtHash 1.0 (multi-stage) student against its teacher on held-out proteins, as
ProtHash 1.0's table: per stage the residue cosine of the adapted stage and the teacher layer it was
trained to match (mean and p05), linear CKA of the native stage against that layer, MLM top-1 and
macro-F1 against the teacher's logits, the last stage's pooled cosine, and throughput.

The teacher runs beside the student (:func:`~protkit.teacher.stage_targets.stage_targets`), batch by
batch in token-budget batches, so the teacher cache is read only for its manifest (teacher, width,
``max_length``, the weights' sha256); the metrics stream (:class:`~protkit.evaluate.stages.StageMetrics`)
over the real residues (CLS, EOS and padding left out). :func:`evaluate_staged` works on in-memory
models; :func:`evaluate_staged_variant` is the file-level stage, which writes ``stages.json`` and
``stages.md`` (:mod:`protkit.evaluate.stage_report`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from protkit.embed.embedder import teacher_forward
from protkit.evaluate.stage_report import STAGES_JSON, STAGES_MD, write_stage_report
from protkit.evaluate.stages import StageMetrics
from protkit.evaluate.throughput import measure_throughput
from protkit.io.outputs import check_outputs
from protkit.io.progress import progress_bar
from protkit.models.esmc.model import ESMC
from protkit.models.names import CONFIG_FILE
from protkit.models.prothash_v1.config import N_STAGES
from protkit.models.prothash_v1.model import StagedProtHash
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.tokenize import encode_one, pad_batch, residue_count, residue_mask
from protkit.teacher.stage_targets import check_stage_layers, stage_layers_for, stage_targets

log = logging.getLogger(__name__)

TRAINING_SUMMARY = "training_summary.json"  # written by distillation into the model directory
LAYERS_KEY = "teacher_layers"  # the summary's record of the teacher block each stage was matched to

__all__ = ["evaluate_staged", "evaluate_staged_variant", "student_teacher_layers"]


def evaluate_staged(
    student: StagedProtHash,
    teacher: ESMC,
    token_lists: Sequence[Sequence[int]],
    teacher_layers: Sequence[int],
    *,
    max_tokens: int = 16384,
    device: str | torch.device = "cpu",
    throughput_sequences: int = 256,
    desc: str = "stages",
) -> dict:
    """Stage metrics of ``student`` against ``teacher`` over ``token_lists`` (``[CLS, residues..., EOS]``
    each; ``teacher_layers``: the 0-based teacher block of each stage) and the throughput of both on the
    first ``throughput_sequences`` of them. JSON-ready: :meth:`StageMetrics.result`'s keys plus
    ``throughput`` (``teacher``, ``student``, ``speedup``)."""
    device = torch.device(device)
    layers = check_stage_layers(teacher_layers, teacher.config.n_layers)
    if len(layers) != len(student.config.stage_layers):
        raise ValueError(f"{len(layers)} teacher layers {list(layers)} for a student of "
                         f"{len(student.config.stage_layers)} stages: give one teacher block per stage")
    if student.config.teacher_dim != teacher.config.d_model:
        raise ValueError(f"the student's adapters give {student.config.teacher_dim}-d vectors (teacher_dim), the "
                         f"teacher's layers are {teacher.config.d_model}-d: it was distilled from another teacher")
    if not token_lists:
        raise ValueError("no sequences to evaluate")
    student.to(device).eval()
    teacher.to(device).eval()
    metrics = StageMetrics()
    total = sum(residue_count(len(t)) for t in token_lists)
    with progress_bar(total=total, desc=desc, unit="res", unit_scale=True) as bar:
        for rows in token_budget_batches([len(t) for t in token_lists], max_tokens):
            batch = pad_batch([token_lists[i] for i in rows]).to(device)
            targets = stage_targets(teacher, batch, layers)
            with torch.inference_mode():
                native = student.stages(batch.input_ids, batch.attention_mask)  # each (B, L, d_model)
                adapted = [adapter(z) for adapter, z in zip(student.adapters, native)]  # each (B, L, teacher_dim)
                logits = None if student.mlm_head is None else student.mlm_head(native[-1])  # (B, L, 33)
            metrics.update(native, targets.hidden, residue_mask(batch.input_ids, batch.attention_mask),
                           student_logits=logits, teacher_logits=None if logits is None else targets.logits,
                           adapted_stages=adapted)
            bar.update(sum(residue_count(len(token_lists[i])) for i in rows))
    return {**metrics.result(), "throughput": staged_throughput(student, teacher, token_lists[:throughput_sequences],
                                                                max_tokens, device)}


def staged_throughput(student: StagedProtHash, teacher: ESMC, token_lists: Sequence[Sequence[int]], max_tokens: int,
                      device: torch.device) -> dict:
    """Residues/s of the teacher (last hidden state) and of the student (last stage through its adapter,
    as ``embed_teacher``), both mean-pooled, on the same sequences with the same batching."""
    dim = teacher.config.d_model
    forwards = {
        "teacher": teacher_forward(teacher),
        "student": lambda ids, mask: student.stage_output(ids, mask, stage=N_STAGES, teacher=True),
    }
    out = {name: measure_throughput(f, token_lists, dim, max_tokens, device) for name, f in forwards.items()}
    rates = out["teacher"]["residues_per_s"], out["student"]["residues_per_s"]
    out["speedup"] = rates[1] / rates[0] if rates[0] and rates[1] else None
    return out


def student_teacher_layers(student_dir: str | Path, teacher_name: str | None, n_layers: int,
                           layers: Sequence[int] | None = None) -> tuple[tuple[int, ...], str]:
    """The teacher block of each stage and where it came from: ``layers`` when given, else the
    ``teacher_layers`` the student's ``training_summary.json`` records, else ProtHash 1.0's for a released
    teacher or layers spread evenly (:func:`~protkit.teacher.stage_targets.stage_layers_for`); checked
    against the teacher's ``n_layers`` blocks (ValueError naming the source)."""
    summary_path = Path(student_dir) / TRAINING_SUMMARY
    recorded = read_recorded_layers(summary_path)
    if layers is not None:
        source = "teacher_layers (given)"
        if recorded is not None and tuple(recorded) != tuple(layers):
            log.warning("evaluating against teacher layers %s; the student was trained against %s (%s)",
                        list(layers), list(recorded), summary_path)
    elif recorded is not None:
        layers, source = recorded, f"{summary_path} ({LAYERS_KEY})"
    else:
        source = f"the default for teacher {teacher_name} of {n_layers} blocks"
    try:
        return stage_layers_for(teacher_name, n_layers, layers), source
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def read_recorded_layers(summary_path: Path) -> list[int] | None:
    """``teacher_layers`` of a training summary; None when the file or the key is absent."""
    if not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{summary_path}: cannot read it as JSON ({err})") from None
    layers = summary.get(LAYERS_KEY) if isinstance(summary, dict) else None
    if layers is None:
        return None
    if not isinstance(layers, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
        raise ValueError(f"{summary_path}: {LAYERS_KEY} must be a list of 0-based teacher blocks, got {layers!r}")
    return layers


def held_out(sequences_parquet: str | Path, split: str, max_sequences: int | None,
             seed: int) -> tuple[list[str], list[str]]:
    """Ids and sequences of ``split`` (a seeded sample of at most ``max_sequences``, in table order)."""
    from protkit.data.table import read_dataset

    path = Path(sequences_parquet)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sequences table here; run the data stage (filter_split) first")
    table = read_dataset(path)
    part = table[(table["split"] == split).to_numpy()]
    if part.empty:
        found = ", ".join(f"{k} {v}" for k, v in table["split"].value_counts().sort_index().items()) or "no rows"
        raise ValueError(f"{path}: no sequences with split == {split!r} (column split has: {found}); "
                         f"check data.test_fraction")
    if max_sequences is not None and len(part) > max_sequences:
        keep = np.sort(np.random.default_rng(seed).choice(len(part), size=max_sequences, replace=False))
        part = part.iloc[keep]
    return list(part["id"]), list(part["sequence"])


def check_cache_teacher(manifest: dict, cache_dir: Path, teacher: ESMC, weights: str, weights_sha256: str) -> None:
    """ValueError when the teacher is not the one the cache was built with (weights or width)."""
    from protkit.teacher.layout import MANIFEST_FILE

    recorded = (manifest.get("fingerprint_parts") or {}).get("weights_sha256")
    if recorded is not None and recorded != weights_sha256:
        raise ValueError(f"{cache_dir / MANIFEST_FILE}: the cache was built with teacher weights of sha256 "
                         f"{recorded}, but {weights} has sha256 {weights_sha256}; evaluate with the cache's teacher")
    if manifest.get("d_model") not in (None, teacher.config.d_model):
        raise ValueError(f"{cache_dir / MANIFEST_FILE}: d_model {manifest['d_model']}, but the teacher {weights} "
                         f"is {teacher.config.d_model} wide")


def evaluate_staged_variant(
    sequences_parquet: str | Path,
    cache_dir: str | Path,
    student_dir: str | Path,
    out_dir: str | Path,
    teacher_weights: str | Path,
    *,
    teacher_random: dict | None = None,
    teacher_dtype: str = "auto",
    teacher_layers: Sequence[int] | None = None,
    max_tokens: int = 16384,
    max_length: int | None = None,
    device: str = "auto",
    split: str = "test",
    max_sequences: int | None = None,
    sample_seed: int = 0,
    throughput_sequences: int = 256,
    variant: str | None = None,
) -> dict:
    """Evaluate the ProtHash 1.0 student in ``student_dir`` against the teacher of the cache in
    ``cache_dir`` (loaded from ``teacher_weights`` / ``teacher_random`` as the cache build loads it) on
    the ``split`` proteins of ``sequences_parquet``; write ``stages.json`` and ``stages.md`` into
    ``out_dir`` and return the metrics. ``max_length``: tokens incl. CLS/EOS (default: the cache's, at
    most the student's context); ``teacher_layers``: see :func:`student_teacher_layers`."""
    from protkit.models.device import precision_of, resolve_device
    from protkit.models.prothash_v1.model import load_staged_dir
    from protkit.teacher.layout import read_manifest
    from protkit.teacher.loading import teacher_from_config

    student_dir, cache_dir, out_dir = Path(student_dir), Path(cache_dir), Path(out_dir)
    check_outputs([out_dir / STAGES_JSON, out_dir / STAGES_MD], inputs=[sequences_parquet, student_dir, cache_dir])
    if not (student_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{student_dir / CONFIG_FILE}: no ProtHash 1.0 model here; distil the variant first")
    manifest = read_manifest(cache_dir)
    ids, sequences = held_out(sequences_parquet, split, max_sequences, sample_seed)
    torch_device = resolve_device(device)
    student = load_staged_dir(student_dir, torch_device)
    teacher, teacher_sha = teacher_from_config(teacher_weights, teacher_random, torch_device, teacher_dtype)
    check_cache_teacher(manifest, cache_dir, teacher, str(teacher_weights), teacher_sha)
    layers, layers_source = student_teacher_layers(student_dir, manifest.get("teacher"), teacher.config.n_layers,
                                                   teacher_layers)
    max_length = min(max_length or manifest["max_length"], student.config.context_length)
    variant = variant or student_dir.name
    log.info("evaluating the stages of %s on %d %s sequences against teacher %s layers %s on %s",
             student_dir, len(ids), split, manifest.get("teacher"), list(layers), torch_device)
    result = evaluate_staged(
        student, teacher, [encode_one(s, max_length) for s in sequences], layers, max_tokens=max_tokens,
        device=torch_device, throughput_sequences=throughput_sequences, desc=f"stages {variant}",
    )
    metrics = {
        **result,
        "variant": variant,
        "model_dir": str(student_dir),
        "student_parameters": student.num_params,
        "student_config": student.config.to_dict(),
        "teacher": manifest.get("teacher"),
        "teacher_weights_sha256": teacher_sha,
        "teacher_dtype": precision_of(next(teacher.parameters()).dtype),  # auto resolved
        "teacher_layers": list(layers),
        "teacher_layers_source": layers_source,
        "cache_fingerprint": manifest.get("fingerprint"),
        "split": split,
        "n_sequences": len(ids),
        "max_length": max_length,
        "max_tokens": max_tokens,
        "device": str(torch_device),
        "device_name": device_name(torch_device),
    }
    write_stage_report(metrics, out_dir)
    return metrics


def device_name(device: torch.device) -> str:
    """``cpu`` or the GPU's name, for the throughput line."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
