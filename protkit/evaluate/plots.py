"""The evaluation's PNG plots, drawn with matplotlib's object API (Agg canvas, no display needed)
and written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from protkit.evaluate.results import LENGTH_BINS, Evaluation
from protkit.io.figures import save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
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

# What the evaluation's throughput runs on (protkit.evaluate.run): the students in torch, int8 as torchao's
# dynamic int8; the teacher in torch at metrics["teacher_dtype"]. `protkit embed --int8` on a CPU runs
# onnxruntime's int8 instead, which the evaluation does not time.
THROUGHPUT_MODELS = {"teacher": "teacher", "fp32": "student fp32", "int8": "student int8"}
THROUGHPUT_BACKENDS = {"fp32": "torch fp32", "int8": "torchao int8"}
LENGTH_TICKS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def throughput_backend(metrics: dict, model: str) -> str:
    """The backend and precision ``model``'s throughput was measured with (``torch fp32``, ``torchao int8``,
    ``torch bf16`` for a bf16 teacher): the entry's own ``backend`` when the evaluation recorded one."""
    recorded = metrics["throughput"][model].get("backend")
    if recorded:
        return recorded
    if model == "teacher":
        return f"torch {metrics.get('teacher_dtype') or 'fp32'}"
    return THROUGHPUT_BACKENDS[model]


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
        length_axis(ax, evaluation.lengths)
        ax.set(title=f"{p} pooling", xlabel="length (residues)", ylabel="cosine to teacher")
        legend = ax.legend(fontsize="small")
        for handle in legend.legend_handles:  # the scatter's 4-point dots, readable in the legend
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([20])
    save_figure(fig, path)


def length_axis(ax: Axes, lengths: np.ndarray) -> None:
    """A log x axis of sequence lengths labelled with plain numbers (10, 20, 50, 100, ...) and no
    minor-tick labels, which crowd each other on a log axis that spans less than a decade or two."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    lo, hi = float(np.min(lengths)), float(np.max(lengths))
    ticks = [t for t in LENGTH_TICKS if lo / 1.5 <= t <= hi * 1.5] or [round(lo), round(hi)]
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_throughput(metrics: dict, path: Path) -> None:
    """Residues/s per model, each bar named with the backend it ran on, and its speed-up over the teacher."""
    fig, (ax,) = _figure(1, width=5.6, height=3.8)
    names = sorted(metrics["throughput"], key=list(THROUGHPUT_MODELS).index)  # teacher first
    rates = [metrics["throughput"][n]["residues_per_s"] or 0.0 for n in names]
    labels = [f"{THROUGHPUT_MODELS[n]}\n{throughput_backend(metrics, n)}" for n in names]
    ax.bar(labels, rates, color=[COLOURS[n] for n in names])
    teacher = metrics["throughput"].get("teacher", {}).get("residues_per_s")
    for i, (name, rate) in enumerate(zip(names, rates)):
        speedup = f"\n{rate / teacher:.1f}× teacher" if teacher and name != "teacher" else ""
        ax.text(i, rate, f"{rate:,.0f}{speedup}", ha="center", va="bottom", fontsize="small")
    ax.margins(y=0.18)  # room for the two-line labels above the tallest bar
    sequences = metrics["throughput"][names[0]]["sequences"] if names else 0
    ax.set(ylabel="residues / s", title=f"throughput on {metrics['device']} ({sequences} held-out proteins)")
    fig.text(0.5, -0.02, "protkit embed --int8 on a CPU runs onnxruntime's int8, not timed here",
             ha="center", va="top", fontsize="x-small", color="dimgray")
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
