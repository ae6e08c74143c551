"""The evaluation's PNG plots, drawn with matplotlib's object API (Agg canvas, no display needed)
and written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from protkit.evaluate.results import LENGTH_BINS, Evaluation
from protkit.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOTS = {"histogram": "cosine_histogram.png", "by_length": "cosine_vs_length.png", "throughput": "throughput.png",
         "recall_vs_size": "recall_vs_bits.png"}

COLOURS = {"fp32": "tab:blue", "int8": "tab:orange", "untrained": "tab:gray", "composition": "tab:green",
           "teacher": "tab:purple", "random": "tab:red"}

LSH_SERIES = (
    ("teacher_recall", "-o", "LSH, Hamming: teacher's neighbours"),
    ("student_recall_hamming", "--o", "LSH, Hamming: student's own neighbours"),
    ("student_recall_reranked", ":o", "LSH + cosine re-rank: student's own neighbours"),
)
STORED_MARKERS = {"fp32": "D", "fp16": "s"}


def save_figure(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _figure(n_panels: int, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    return fig, [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]


def plot_histograms(evaluation: Evaluation, path: Path) -> None:
    poolings = evaluation.metrics["poolings"]
    fig, axes = _figure(len(poolings))
    for ax, p in zip(axes, poolings):
        lo = min(float(np.min(cos[p])) for cos in evaluation.cosines.values())
        bins = np.linspace(min(lo, 0.9), 1.0, 50)
        for model, cos in evaluation.cosines.items():
            ax.hist(cos[p], bins=bins, alpha=0.5, label=model, color=COLOURS[model])
        ax.set(title=f"{p} pooling", xlabel="cosine to teacher", ylabel="held-out sequences")
        ax.legend(fontsize="small")
    save_figure(fig, path)


def plot_by_length(evaluation: Evaluation, path: Path) -> None:
    poolings = evaluation.metrics["poolings"]
    fig, axes = _figure(len(poolings))
    for ax, p in zip(axes, poolings):
        for model in ("fp32", "int8"):
            ax.scatter(evaluation.lengths, evaluation.cosines[model][p], s=4, alpha=0.4, label=model,
                       color=COLOURS[model])
        in_bins = [(evaluation.lengths >= lo) & (evaluation.lengths < hi) for lo, hi, _ in LENGTH_BINS]
        cosines = evaluation.cosines["fp32"][p]
        points = [(np.median(evaluation.lengths[b]), np.mean(cosines[b])) for b in in_bins if b.any()]
        ax.plot(*zip(*points), "-o", color=COLOURS["fp32"], label="fp32, mean per length bin")
        ax.set_xscale("log")
        ax.set(title=f"{p} pooling", xlabel="length (residues)", ylabel="cosine to teacher")
        ax.legend(fontsize="small", markerscale=3)
    save_figure(fig, path)


def plot_throughput(metrics: dict, path: Path) -> None:
    fig, (ax,) = _figure(1)
    names = list(metrics["throughput"])
    rates = [metrics["throughput"][n]["residues_per_s"] or 0.0 for n in names]
    ax.bar(names, rates, color=[COLOURS[n] for n in names])
    for i, rate in enumerate(rates):
        ax.text(i, rate, f"{rate:,.0f}", ha="center", va="bottom", fontsize="small")
    ax.set(ylabel="residues / s", title=f"throughput on {metrics['device']}")
    save_figure(fig, path)


def plot_recall_vs_size(metrics: dict, path: Path) -> None:
    """Recall@k against bytes per protein (bits on the top axis): the fp32 student's LSH codes,
    and float vectors of both students stored as fp32 and fp16 as markers (int8 hollow)."""
    poolings, k = metrics["poolings"], metrics["lsh"]["k"]
    fig, axes = _figure(len(poolings), width=5.0, height=3.8)
    for ax, p in zip(axes, poolings):
        rows = metrics["lsh"]["poolings"][p]
        for key, style, label in LSH_SERIES:
            ax.plot([r["bytes"] for r in rows], [r[key] for r in rows], style, color=COLOURS["fp32"], label=label,
                    alpha=1.0 if key == "teacher_recall" else 0.6)
        stored = metrics["stored_recall"][p]
        for row in stored:
            colour = COLOURS[row["model"]]
            ax.scatter(row["bytes"], row["teacher_recall"], marker=STORED_MARKERS[row["dtype"]], zorder=3,
                       s=40 if row["model"] == "fp32" else 110, linewidths=1.5, edgecolors=colour,
                       facecolors=colour if row["model"] == "fp32" else "none",
                       label=f"{row['model']} student as {row['dtype']} (float): teacher's neighbours")
        ticks = sorted({r["bytes"] for r in rows} | {r["bytes"] for r in stored})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize="small")
        top = ax.secondary_xaxis("top", functions=(lambda b: b * 8, lambda bits: bits / 8))
        top.set_xticks([r["bits"] for r in rows], [str(r["bits"]) for r in rows], fontsize="small")
        top.set_xlabel("bits (LSH codes)")
        ax.set(title=f"{p} pooling", xlabel="bytes per protein", ylabel=f"recall@{k}", ylim=(0, 1.05))
    if poolings:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    save_figure(fig, path)
