"""Evaluation outputs: ``metrics.json``, ``report.md`` and PNG plots per variant, and the summary
across variants (``summary.tsv`` + plot). Every file is written atomically; plots use
matplotlib's object API (Agg canvas, no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from protkit.atomic import atomic_path, write_json, write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from protkit.evaluate import Evaluation

PLOTS = {"histogram": "cosine_histogram.png", "by_length": "cosine_vs_length.png", "throughput": "throughput.png"}
COLOURS = {"fp32": "tab:blue", "int8": "tab:orange", "untrained": "tab:gray", "composition": "tab:green",
           "teacher": "tab:purple"}
SUMMARY_COLUMNS = (
    "variant", "precision", "pooling", "cosine_mean", "cosine_median", "cosine_p5", "cosine_min", "recall_at_k",
    "int8_vs_fp32_mean", "untrained_cosine_mean", "composition_cosine_mean", "gain_vs_composition",
    "gain_vs_composition_ci_low", "beats_baselines",
    "residues_per_s", "teacher_residues_per_s", "size_bytes", "n_test",
)


def _save(fig: Figure, path: Path) -> None:
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
    _save(fig, path)


def plot_by_length(evaluation: Evaluation, path: Path) -> None:
    from protkit.evaluate import LENGTH_BINS

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
    _save(fig, path)


def plot_throughput(metrics: dict, path: Path) -> None:
    fig, (ax,) = _figure(1)
    names = list(metrics["throughput"])
    rates = [metrics["throughput"][n]["residues_per_s"] or 0.0 for n in names]
    ax.bar(names, rates, color=[COLOURS[n] for n in names])
    for i, rate in enumerate(rates):
        ax.text(i, rate, f"{rate:,.0f}", ha="center", va="bottom", fontsize="small")
    ax.set(ylabel="residues / s", title=f"throughput on {metrics['device']}")
    _save(fig, path)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(metrics: dict) -> str:
    """``report.md`` text for one variant's metrics."""
    k, poolings = metrics["k"], metrics["poolings"]
    models = metrics["models"]
    lines = [
        f"# Evaluation: {metrics.get('variant', 'student')}",
        "",
        f"Held-out sequences: {metrics['n_test']} (composition baseline fitted on {metrics['n_train']} train "
        f"sequences); max_length {metrics['max_length']} tokens; device {metrics['device']}.",
        "",
    ]
    for p in poolings:
        fp32, int8 = (metrics["beats_baselines"][x][p] for x in ("fp32", "int8"))
        lines += [
            f"## {p} pooling",
            "",
            f"**The fp32 student {'beats' if fp32 else 'does NOT beat'} both baselines** (untrained student, "
            f"composition ridge): the 95% bootstrap interval of its per-sequence cosine gain over each lies "
            f"{'above' if fp32 else 'not wholly above'} zero; the int8 student {'does' if int8 else 'does NOT'}.",
            "",
            "| student | baseline | mean cosine gain | 95% interval | sequences won |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {x} | {b} | {d['mean']:+.4f} | [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] | {d['win_fraction']:.0%} |"
                for x in ("fp32", "int8")
                for b, d in metrics["vs_baselines"][x][p].items()
            ),
            "",
            f"| model | mean | median | p5 | min | recall@{k} |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, per_pooling in models.items():
            c = per_pooling[p]["cosine"]
            lines.append(f"| {name} | {_fmt(c['mean'])} | {_fmt(c['median'])} | {_fmt(c['p5'])} | {_fmt(c['min'])} "
                         f"| {_fmt(per_pooling[p][f'recall@{k}'], 3)} |")
        agreement = metrics["int8_vs_fp32"][p]
        counts = models["fp32"][p]["by_length"]
        lines += [
            "",
            f"int8 vs fp32 student cosine: mean {_fmt(agreement['mean'], 5)}, min {_fmt(agreement['min'], 5)}.",
            "",
            "Mean cosine by length (residues):",
            "",
            "| model | " + " | ".join(f"{b} (n={counts[b]['n']})" for b in metrics["length_bins"]) + " |",
            "| --- |" + " --- |" * len(metrics["length_bins"]),
        ]
        for name, per_pooling in models.items():
            bins = per_pooling[p]["by_length"]
            lines.append(f"| {name} | " + " | ".join(_fmt(bins[b]["mean"]) for b in metrics["length_bins"]) + " |")
        lines.append("")
    lines += ["## Throughput", "", "| model | residues/s | sequences | seconds |", "| --- | --- | --- | --- |"]
    for name, t in metrics["throughput"].items():
        lines.append(f"| {name} | {_fmt(t['residues_per_s'], 0)} | {t['sequences']} | {_fmt(t['seconds'], 3)} |")
    if "sizes" in metrics:
        s = metrics["sizes"]
        lines += ["", f"Size on disk: fp32 {s['fp32_bytes'] / 1e6:.2f} MB, int8 {s['int8_bytes'] / 1e6:.2f} MB "
                      f"({100 * s['int8_ratio']:.1f}% of fp32)."]
    lines += ["", "## Plots", ""] + [f"- [{name}]({file})" for name, file in PLOTS.items()]
    return "\n".join(lines) + "\n"


def write_report(evaluation: Evaluation, out_dir: str | Path) -> None:
    """``metrics.json``, ``report.md`` and the three PNGs in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_histograms(evaluation, out_dir / PLOTS["histogram"])
    plot_by_length(evaluation, out_dir / PLOTS["by_length"])
    plot_throughput(evaluation.metrics, out_dir / PLOTS["throughput"])
    write_text(out_dir / "report.md", markdown(evaluation.metrics))
    write_json(out_dir / "metrics.json", evaluation.metrics)


def summary_rows(metrics: dict) -> list[dict]:
    """One row per precision (fp32, int8) and pooling of one variant's metrics."""
    k, rows = metrics["k"], []
    for precision in ("fp32", "int8"):
        for p in metrics["poolings"]:
            cosine = metrics["models"][precision][p]["cosine"]
            rows.append({
                "variant": metrics.get("variant"),
                "precision": precision,
                "pooling": p,
                **{f"cosine_{s}": cosine[s] for s in ("mean", "median", "p5", "min")},
                "recall_at_k": metrics["models"][precision][p][f"recall@{k}"],
                "int8_vs_fp32_mean": metrics["int8_vs_fp32"][p]["mean"] if precision == "int8" else None,
                "untrained_cosine_mean": metrics["models"]["untrained"][p]["cosine"]["mean"],
                "composition_cosine_mean": metrics["models"]["composition"][p]["cosine"]["mean"],
                "gain_vs_composition": metrics["vs_baselines"][precision][p]["composition"]["mean"],
                "gain_vs_composition_ci_low": metrics["vs_baselines"][precision][p]["composition"]["ci95"][0],
                "beats_baselines": metrics["beats_baselines"][precision][p],
                "residues_per_s": metrics["throughput"][precision]["residues_per_s"],
                "teacher_residues_per_s": metrics["throughput"]["teacher"]["residues_per_s"],
                "size_bytes": metrics.get("sizes", {}).get(f"{precision}_bytes"),
                "n_test": metrics["n_test"],
            })
    return rows


def summarize(metrics_paths: Sequence[str | Path], out_tsv: str | Path, out_png: str | Path) -> pd.DataFrame:
    """``summary.tsv`` (one row per variant, precision and pooling) and a plot of mean cosine to
    the teacher across variants, with the baselines as markers."""
    rows = [row for path in metrics_paths for row in summary_rows(json.loads(Path(path).read_text()))]
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    poolings = list(dict.fromkeys(table["pooling"]))
    fig, axes = _figure(max(len(poolings), 1), width=max(4.0, 1.6 * table["variant"].nunique() + 2))
    for ax, p in zip(axes, poolings):
        part = table[table["pooling"] == p]
        variants = list(dict.fromkeys(part["variant"]))
        x = np.arange(len(variants))
        for offset, precision in ((-0.2, "fp32"), (0.2, "int8")):
            values = part[part["precision"] == precision].set_index("variant").loc[variants, "cosine_mean"]
            ax.bar(x + offset, values, width=0.4, label=precision, color=COLOURS[precision])
        fp32_rows = part[part["precision"] == "fp32"].set_index("variant").loc[variants]
        for model, marker in (("untrained", "x"), ("composition", "o")):
            ax.scatter(x, fp32_rows[f"{model}_cosine_mean"], marker=marker, color=COLOURS[model], zorder=3,
                       label=f"{model} baseline")
        ax.set_xticks(x, variants, rotation=30, ha="right")
        ax.set(title=f"{p} pooling", ylabel="mean held-out cosine to teacher")
        ax.legend(fontsize="small")
    _save(fig, Path(out_png))
    return table
