"""A ``finetune:`` task of the workflow configuration as the settings of one ``protkit finetune`` run.

The configuration's keys are the command's options (``lora: null`` is ``--full``); what a task
leaves out takes :class:`FinetuneSettings`' default, the one home of those defaults.
"""

from __future__ import annotations

from pathlib import Path

from protkit.finetune.settings import FinetuneSettings, LabelOptions

LABEL_KEYS = {"label_regex": "label_regex", "label_columns": "label_columns", "sequence_column": "sequence_column",
              "id_column": "id_column"}  # config key -> LabelOptions field
RUN_KEYS = {"task": "task", "lora": "lora_rank", "lr": "lr", "epochs": "epochs", "patience": "patience",
            "batch_tokens": "batch_tokens", "valid_fraction": "valid_fraction", "test_fraction": "test_fraction",
            "max_length": "max_length", "seed": "seed", "baselines": "baselines"}  # config key -> settings field


def task_settings(task: dict, model: str | Path, train: Path, test: Path | None, output: Path,
                  device: str = "auto") -> FinetuneSettings:
    """The run of one configured ``task`` on ``model`` (the base model as ``protkit finetune
    --model`` takes it), with ``train``/``test`` resolved to files."""
    labels = {field: task[key] for key, field in LABEL_KEYS.items() if key in task}
    if "label_columns" in labels:
        labels["label_columns"] = tuple(labels["label_columns"])
    run = {field: task[key] for key, field in RUN_KEYS.items() if key in task}
    return FinetuneSettings(model=str(model), train=train, test=test, output=output, labels=LabelOptions(**labels),
                            device=device, resume=True, **run)

