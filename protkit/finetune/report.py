"""The fine-tuning summary of the workflow's report: ``summary.tsv`` (one row per configured task:
the fine-tuned model's score beside the frozen-embedding probe and the composition baseline, or why
the task was skipped) and one learning-curve panel per task (training loss and the validation
metric per epoch, the kept epoch marked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd

from protkit.evaluate.plots import save_figure
from protkit.io.atomic import atomic_path
from protkit.io.outputs import claim_outputs

SUMMARY_COLUMNS = (
    "task", "model", "status", "kind", "mode", "metric", "finetuned_valid", "finetuned_test", "frozen_probe_test",
    "composition_test", "best_epoch", "epochs_run", "stopped_early", "n_train", "n_valid", "n_test",
    "training_seconds", "note",
)  # fmt: skip


def scored(metrics: dict, part: str | None, where: str) -> float | None:
    """The task's metric of ``part`` (``finetuned``/``frozen_probe``/``composition``) on ``where``."""
    sets = metrics.get(part) if part else None
    return (sets or {}).get(where, {}).get(metrics["metric"])


def summary_row(task: str, model: str, metrics: dict) -> dict:
    """One task's row, from its ``metrics.json``."""
    return {
        "task": task, "model": model, "status": "ok",
        "kind": metrics["task"], "mode": metrics["settings"]["mode"], "metric": metrics["metric"],
        "finetuned_valid": scored(metrics, "finetuned", "valid"),
        "finetuned_test": scored(metrics, "finetuned", "test"),
        "frozen_probe_test": scored(metrics, "frozen_probe", "test"),
        "composition_test": scored(metrics, "composition", "test"),
        "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
        "stopped_early": metrics["stopped_early"], **{f"n_{name}": n for name, n in metrics["n"].items()},
        "training_seconds": metrics["seconds"]["training"], "note": metrics["summary"],
    }


def plot_learning_curves(curves: Mapping[str, dict], path: Path) -> None:
    """Per task: training loss (left axis) and the validation metric (right axis) per epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * max(1, len(curves)), 3.6), layout="constrained")
    if not curves:
        fig.text(0.5, 0.5, "no fine-tuning task ran (see summary.tsv)", ha="center", va="center")
    for i, (task, metrics) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), i + 1)
        history = metrics["learning_curve"]
        epochs = [row["epoch"] for row in history]
        ax.plot(epochs, [row["train_loss"] for row in history], "-o", color="tab:blue", label="training loss")
        ax.axvline(metrics["best_epoch"], color="gray", linestyle=":", label="kept epoch")
        ax.set(title=f"{task} ({metrics['settings']['mode']})", xlabel="epoch", ylabel="training loss",
               xticks=epochs)
        handles = ax.get_legend_handles_labels()
        valid = [row.get(f"valid_{metrics['metric']}") for row in history]
        if any(v is not None for v in valid):
            right = ax.twinx()
            right.plot(epochs, [float("nan") if v is None else v for v in valid], "-s", color="tab:orange",
                       label=f"validation {metrics['metric']}")
            right.set_ylabel(f"validation {metrics['metric']}")
            handles = tuple(a + b for a, b in zip(handles, right.get_legend_handles_labels()))
        ax.legend(*handles, loc="upper center", fontsize="small")
    save_figure(fig, path)


def summarize_finetune(ran: Mapping[str, tuple[str, str | Path]], skipped: Mapping[str, tuple[str, str]],
                       out_tsv: str | Path, out_png: str | Path) -> pd.DataFrame:
    """``summary.tsv`` and the learning curves of the tasks that ran (``{task: (model, metrics.json)}``),
    with a row for each skipped one (``{task: (model, reason)}``)."""
    with claim_outputs([out_tsv, out_png], inputs=[path for _, path in ran.values()]):
        metrics = {task: json.loads(Path(path).read_text(encoding="utf-8")) for task, (_, path) in ran.items()}
        rows = [summary_row(task, ran[task][0], m) for task, m in metrics.items()]
        rows += [{"task": task, "model": model, "status": "skipped", "note": reason}
                 for task, (model, reason) in skipped.items()]
        table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
        with atomic_path(out_tsv) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        plot_learning_curves(metrics, Path(out_png))
    return table
