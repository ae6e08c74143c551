"""What a fine-tuning run writes beside the model: ``metrics.json`` (scores of the fine-tuned model,
the frozen-embedding probe and the composition baseline on the validation and test proteins, the
learning curve, label counts, the settings), and the output directory itself, made complete in
``OUTPUT.partial/`` and then put in place at once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from transformers import PreTrainedModel

from protkit.finetune.dataset import Prepared
from protkit.finetune.settings import FinetuneSettings
from protkit.finetune.tasks import Example, LabelSpace
from protkit.finetune.train import TENSORBOARD_DIR, Progress
from protkit.hf.export import write_hf
from protkit.hf.heads import IGNORE
from protkit.io.atomic import atomic_dir, write_json
from protkit.io.digests import file_sha256
from protkit.sequences.tokenize import token_count
from protkit.version import VERSION

METRICS_FILE = "metrics.json"
EXPORT_DIR = "model"  # inside OUTPUT.partial/: the Hugging Face directory before it is put in place


def label_counts(space: LabelSpace, sets: dict[str, Sequence[Example]]) -> dict[str, dict]:
    """Per set: proteins per class (residues per class for tokens), positives per label (multilabel),
    or the range and mean (regression)."""
    counts: dict[str, dict] = {}
    for name, examples in sets.items():
        if not examples:
            continue
        if space.task == "regression":
            values = np.array([e.target for e in examples])
            counts[name] = {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}
        elif space.task == "multilabel":
            positives = np.array([e.target for e in examples]).sum(axis=0)
            counts[name] = {label: int(n) for label, n in zip(space.names, positives)}
        else:
            ids = [t for e in examples for t in (e.target if space.task == "tokens" else [e.target]) if t != IGNORE]
            found = np.bincount(np.array(ids, dtype=np.int64), minlength=len(space.names))
            counts[name] = {label: int(n) for label, n in zip(space.names, found)}
    return counts


def input_summary(data: Prepared) -> dict[str, dict]:
    """Per input file: path, sha256, records, what was skipped and why, proteins truncated."""
    from_train = [] if "test" in data.files else data.test  # --test-fraction: the test proteins are train's
    examples = {"train": data.train + data.valid + from_train, "test": data.test}
    return {name: {"path": str(labelled.path), "sha256": file_sha256(labelled.path), "records": labelled.n_records,
                   "skipped": labelled.skipped, "skipped_examples": labelled.examples,
                   "truncated": sum(token_count(len(e.sequence)) > data.max_length for e in examples[name])}
            for name, labelled in data.files.items()}


def summary_line(space: LabelSpace, scores: dict, baselines: dict, progress: Progress) -> str:
    """One line: the metric on the test (else validation) set beside the baselines', and the best epoch."""
    where = "test" if "test" in scores else "valid" if "valid" in scores else None
    epochs = f"best epoch {progress.best_epoch} of {progress.epochs_done}"
    if where is None:
        return f"no validation or test proteins to score; {epochs}"
    metric = space.metric

    def text(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    others = ", ".join(f"{name.replace('_', ' ')} {text(sets.get(where, {}).get(metric))}"
                       for name, sets in baselines.items())
    return f"{where} {metric} {text(scores[where][metric])}" + (f" ({others})" if others else "") + f"; {epochs}"


def metrics_document(settings: FinetuneSettings, identity: dict, data: Prepared, scores: dict, baselines: dict,
                     progress: Progress, model: dict, seconds: float) -> dict:
    """The content of ``metrics.json``."""
    sets = {"train": data.train, "valid": data.valid, "test": data.test}
    return {
        "summary": summary_line(data.space, scores, baselines, progress),
        "task": data.space.task,
        "metric": data.space.metric,
        "labels": list(data.space.names),
        "model": {**model, "sha256": identity["model_sha256"]},
        "n": {name: len(examples) for name, examples in sets.items()},
        "label_counts": label_counts(data.space, sets),
        "inputs": input_summary(data),
        "finetuned": scores,
        "frozen_probe": baselines.get("frozen_probe"),
        "composition": baselines.get("composition"),
        "learning_curve": progress.history,
        "best_epoch": progress.best_epoch,
        "epochs_run": progress.epochs_done,
        "stopped_early": progress.stopped_early,
        "settings": {**settings.to_dict(), "max_length": data.max_length, "mode": settings.mode},
        "seconds": {"training": round(progress.train_seconds, 3), "total": round(seconds, 3)},
        "protkit_version": VERSION,
    }


def write_model_dir(model: PreTrainedModel, output: Path, work: Path, document: dict, inputs: Sequence[Path]) -> Path:
    """The output directory: the Hugging Face model, ``metrics.json`` and ``tensorboard/``, written in
    ``work`` and then put in place as one directory (an older one replaced)."""
    staged = write_hf(model, work / EXPORT_DIR, inputs=inputs)
    with atomic_dir(output) as tmp:
        for item in sorted(staged.iterdir()):
            os.replace(item, tmp / item.name)
        if (work / TENSORBOARD_DIR).is_dir():
            shutil.copytree(work / TENSORBOARD_DIR, tmp / TENSORBOARD_DIR)
        write_json(tmp / METRICS_FILE, document)
    return output
