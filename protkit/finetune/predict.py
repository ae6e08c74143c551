"""``protkit predict``: a fine-tuned model's predictions for every protein of a FASTA file.

Output parquet, one row per kept record in FASTA order: ``id``, ``length`` (residues), ``truncated``
(only the first ``max_length - 2`` residues were seen), ``prediction`` and

- classification: ``prediction`` the class name, ``probabilities`` one per class (softmax);
- multilabel: ``prediction`` the list of labels whose probability is over 0.5, ``probabilities``
  one per label (sigmoid);
- regression: ``prediction`` and ``value`` the predicted number;
- tokens: ``prediction`` one label per residue seen (a string when every class name is one
  character, else a list), ``probabilities`` one list per residue.

The class and label names are in the parquet metadata (``labels``). Records are read as ``protkit
embed`` reads them (:func:`protkit.embed.plan.plan_records`: ``alphabet`` and ``overlength``
policies, DNA/RNA files refused); the file is written atomically with ``protkit`` metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from protkit.embed.plan import Plan, plan_records
from protkit.finetune.errors import FinetuneError
from protkit.finetune.inference import head_outputs
from protkit.finetune.model import context_length, load_finetuned
from protkit.finetune.settings import DEFAULT_BATCH_TOKENS
from protkit.finetune.tasks import LabelSpace
from protkit.io.digests import file_sha256
from protkit.io.metadata import write_parquet
from protkit.io.outputs import claim_outputs
from protkit.models.device import resolve_device
from protkit.models.names import WEIGHTS_FILE
from protkit.sequences.fasta import read_fasta
from protkit.sequences.tokenize import token_count
from protkit.version import VERSION

log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def prediction_columns(space: LabelSpace, outputs: Sequence[np.ndarray]) -> dict[str, pa.Array]:
    """``prediction`` and ``probabilities`` (or ``value``) of the model's outputs (one array per protein)."""
    names = np.array(space.names, dtype=object)
    if space.task == "regression":
        values = pa.array([float(o[0]) for o in outputs], pa.float64())
        return {"prediction": values, "value": values}
    if space.task == "multilabel":
        probabilities = [sigmoid(o) for o in outputs]  # (K,) each
        predicted = [names[p > 0.5].tolist() for p in probabilities]
        return {"prediction": pa.array(predicted, pa.list_(pa.string())),
                "probabilities": pa.array([p.tolist() for p in probabilities], pa.list_(pa.float32()))}
    probabilities = [softmax(o) for o in outputs]  # (C,) or (L_i, C)
    if space.task == "classification":
        return {"prediction": pa.array([space.names[int(p.argmax())] for p in probabilities], pa.string()),
                "probabilities": pa.array([p.tolist() for p in probabilities], pa.list_(pa.float32()))}
    per_residue = [names[p.argmax(axis=1)].tolist() for p in probabilities]
    one_character = all(len(name) == 1 for name in space.names)
    predicted = pa.array(["".join(p) for p in per_residue], pa.string()) if one_character \
        else pa.array(per_residue, pa.list_(pa.string()))
    return {"prediction": predicted,
            "probabilities": pa.array([p.tolist() for p in probabilities], pa.list_(pa.list_(pa.float32())))}


def prediction_table(plan: Plan, space: LabelSpace, outputs: Sequence[np.ndarray], max_length: int) -> pa.Table:
    columns = {
        "id": pa.array([row.record.id for row in plan.rows], pa.string()),
        "length": pa.array([len(row.sequence) for row in plan.rows], pa.int32()),
        "truncated": pa.array([token_count(len(row.sequence)) > max_length for row in plan.rows], pa.bool_()),
        **prediction_columns(space, outputs),
    }
    return pa.table(columns)


def predict_fasta(model_dir: str | Path, fasta: str | Path, output: str | Path, *, max_tokens: int | None = None,
                  max_length: int | None = None, overlength: str = "truncate", alphabet: str = "reject",
                  device: str = "auto") -> Path:
    """Write the predictions of the fine-tuned ``model_dir`` for ``fasta`` to ``output`` (module docstring)."""
    model_dir, fasta = Path(model_dir), Path(fasta)
    if not fasta.is_file():
        raise FileNotFoundError(f"input FASTA {fasta}: no such file")
    model, space = load_finetuned(model_dir)
    context = context_length(model.config)
    max_length = max_length or context
    if not token_count(1) <= max_length <= context:
        raise FinetuneError(f"--max-length {max_length}: must be between {token_count(1)} and the model's context "
                            f"length, {context} tokens")
    torch_device = resolve_device(device)
    with claim_outputs([output], inputs=[fasta, model_dir]):
        plan = plan_records(list(enumerate(read_fasta(fasta))), str(fasta), max_length, overlength, alphabet)
        outputs = head_outputs(model.to(torch_device), [row.sequence for row in plan.rows], space.task == "tokens",
                               max_length, max_tokens or DEFAULT_BATCH_TOKENS, torch_device)
        table = prediction_table(plan, space, outputs, max_length)
        meta = {
            "kind": "predictions", "model": str(model_dir), "model_sha256": file_sha256(model_dir / WEIGHTS_FILE),
            "task": space.task, "labels": list(space.names), "max_length": max_length, "overlength": overlength,
            "alphabet": alphabet, "input": str(fasta), "input_sha256": file_sha256(fasta),
            "n_records": plan.n_records, "n_rows": len(plan.rows), "n_truncated": sum(r.truncated for r in plan.rows),
            "dropped": plan.dropped, "rejected": [{k: v for k, v in d.items() if k != "detail"} for d in plan.rejected],
            "protkit_version": VERSION,
        }
        write_parquet(table, meta, output)
    log.info("wrote %s: %d predictions (%d truncated, %d dropped, %d rejected)", output, len(plan.rows),
             meta["n_truncated"], len(plan.dropped), len(plan.rejected))
    return Path(output)
