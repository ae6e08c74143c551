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
from protkit.eval_results import BASELINES, LENGTH_BINS, PRECISIONS, Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOTS = {"histogram": "cosine_histogram.png", "by_length": "cosine_vs_length.png", "throughput": "throughput.png",
         "recall_vs_size": "recall_vs_bits.png"}
COLOURS = {"fp32": "tab:blue", "int8": "tab:orange", "untrained": "tab:gray", "composition": "tab:green",
           "teacher": "tab:purple", "random": "tab:red"}
SUMMARY_COLUMNS = (
    "variant", "precision", "pooling", "cosine_mean", "cosine_median", "cosine_p5", "cosine_min", "recall_at_k",
    "int8_vs_fp32_mean", "untrained_cosine_mean", "composition_cosine_mean",
    "gain_vs_untrained", "gain_vs_untrained_ci_low", "gain_vs_untrained_ci_high",
    "gain_vs_composition", "gain_vs_composition_ci_low", "gain_vs_composition_ci_high", "beats_baselines",
    "residues_per_s", "teacher_residues_per_s", "size_bytes", "n_test",
)
PROBE_COLUMN = "probe_{}"  # per probe: normalised MCC of the row's precision
PROBE_MODELS = {"teacher": "teacher", "fp32": "fp32 student", "int8": "int8 student", "random": "random control"}


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


LSH_SERIES = (
    ("teacher_recall", "-o", "LSH, Hamming: teacher's neighbours"),
    ("student_recall_hamming", "--o", "LSH, Hamming: student's own neighbours"),
    ("student_recall_reranked", ":o", "LSH + cosine re-rank: student's own neighbours"),
)
STORED_MARKERS = {"fp32": "D", "fp16": "s"}


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
    _save(fig, path)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def lsh_markdown(metrics: dict) -> list[str]:
    """The neighbour-agreement section: LSH codes per bit count, float vectors per storage type."""
    lsh = metrics["lsh"]
    k = lsh["k"]
    lines = [
        "## Neighbour agreement: LSH codes and stored vectors",
        "",
        f"recall@{k} among the {metrics['n_test']} held-out proteins, each searched against the others. LSH "
        f"codes of the fp32 student, planes as `protkit hash` picks them (ITQ up to the vectors' width, random "
        f"hyperplanes above; seed {lsh['seed']}) centred on {lsh['centre']}; "
        f"*re-ranked* = the {lsh['candidate_factor']}×k nearest codes re-ranked by the float vectors' cosine, as "
        f"search uses them. *teacher's* = how many of the teacher's {k} neighbours are found; *student's own* = "
        f"how many of the float student's. Plot: [recall_vs_size]({PLOTS['recall_vs_size']}).",
        "",
    ]
    for p in metrics["poolings"]:
        lines += [
            f"### {p} pooling",
            "",
            "| bits | planes | bytes/protein | teacher's, Hamming | student's own, Hamming | student's own, re-ranked |",
            "| --- | --- | --- | --- | --- | --- |",
            *(f"| {r['bits']} | {r.get('method', 'random')} | {r['bytes']} | {_fmt(r['teacher_recall'], 3)} "
              f"| {_fmt(r['student_recall_hamming'], 3)} "
              f"| {_fmt(r['student_recall_reranked'], 3)} |" for r in lsh["poolings"][p]),
            "",
            "| float vectors | bytes/protein | teacher's |",
            "| --- | --- | --- |",
            *(f"| {r['model']} student as {r['dtype']} | {r['bytes']} | {_fmt(r['teacher_recall'], 3)} |"
              for r in metrics["stored_recall"][p]),
            "",
        ]
    return lines


def probes_markdown(probes: dict) -> list[str]:
    """The probes section: per probe, its data and a table of teacher, students and random control."""
    lines = ["## Probes", ""]
    if not probes:
        return lines + ["No probes configured (`probes:` in the configuration).", ""]
    lines += [
        "Logistic regression (standardised features, balanced class weights) fitted on each probe's train "
        "split, scored on its test split; 1-NN = label of the nearest train protein by cosine. "
        "*normalised MCC* = (student − random) / (teacher − random): 1 = as informative as the teacher, "
        "0 = as random vectors.",
        "",
    ]
    for name, probe in probes.items():
        lines += [f"### {name}", ""]
        if probe["status"] != "ok":
            lines += [f"*Skipped: {probe['note']}.*", ""]
            continue
        left_out = ", ".join(f"{reason} {n}" for reason, n in probe["skipped"].items() if n) or "none"
        lines += [
            f"`{probe['path']}`, {probe['pooling']} pooling: {probe['n_train']} train / {probe['n_test']} test "
            f"proteins, {len(probe['classes'])} classes; of the file's {probe['n_records']} records, left out: "
            f"{left_out}; {probe['truncated']} truncated to the student's context.",
            "",
            "| model | MCC | macro F1 | accuracy | 1-NN accuracy | normalised MCC |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for model, label in PROBE_MODELS.items():
            r = probe["models"][model]
            converged = "" if r["converged"] else " (not converged)"
            lines.append(f"| {label} | {r['mcc']:.3f}{converged} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} "
                         f"| {r['knn1_accuracy']:.3f} | {_fmt(r.get('normalised_mcc'), 3)} |")
        lines.append("")
    return lines


PROBE_COLUMNS = ("probe", "model", "mcc", "macro_f1", "accuracy", "knn1_accuracy", "normalised_mcc", "n_train",
                 "n_test", "status")


def probe_table(probes: dict) -> pd.DataFrame:
    """``probes.tsv``: one row per probe and model (teacher, students, random control); a skipped
    probe is one row saying so."""
    rows = []
    for name, probe in probes.items():
        if probe["status"] != "ok":
            rows.append({"probe": name, "status": f"skipped: {probe['note']}"})
            continue
        for model in PROBE_MODELS:
            r = probe["models"][model]
            rows.append({"probe": name, "model": model, **{c: r.get(c) for c in PROBE_COLUMNS[2:7]},
                         "n_train": probe["n_train"], "n_test": probe["n_test"],
                         "status": "ok" if r["converged"] else "ok (not converged)"})
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS))


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
    lines += lsh_markdown(metrics) + probes_markdown(metrics["probes"])
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
    """``metrics.json``, ``report.md``, ``probes.tsv`` and the four PNGs of :data:`PLOTS` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_histograms(evaluation, out_dir / PLOTS["histogram"])
    plot_by_length(evaluation, out_dir / PLOTS["by_length"])
    plot_throughput(evaluation.metrics, out_dir / PLOTS["throughput"])
    plot_recall_vs_size(evaluation.metrics, out_dir / PLOTS["recall_vs_size"])
    write_text(out_dir / "report.md", markdown(evaluation.metrics))
    with atomic_path(out_dir / "probes.tsv") as tmp:
        probe_table(evaluation.metrics["probes"]).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    write_json(out_dir / "metrics.json", evaluation.metrics)


def summary_rows(metrics: dict) -> list[dict]:
    """One row per precision (fp32, int8) and pooling of one variant's metrics; a ``probe_<name>``
    column per probe holds that precision's normalised MCC (the probe's own pooling)."""
    k, rows = metrics["k"], []
    probes = metrics.get("probes", {})
    for precision in PRECISIONS:
        for p in metrics["poolings"]:
            cosine = metrics["models"][precision][p]["cosine"]
            gains = metrics["vs_baselines"][precision][p]
            rows.append({
                "variant": metrics.get("variant"),
                "precision": precision,
                "pooling": p,
                **{f"cosine_{s}": cosine[s] for s in ("mean", "median", "p5", "min")},
                "recall_at_k": metrics["models"][precision][p][f"recall@{k}"],
                "int8_vs_fp32_mean": metrics["int8_vs_fp32"][p]["mean"] if precision == "int8" else None,
                "untrained_cosine_mean": metrics["models"]["untrained"][p]["cosine"]["mean"],
                "composition_cosine_mean": metrics["models"]["composition"][p]["cosine"]["mean"],
                **{f"gain_vs_{b}{suffix}": value for b in BASELINES for suffix, value in (
                    ("", gains[b]["mean"]), ("_ci_low", gains[b]["ci95"][0]), ("_ci_high", gains[b]["ci95"][1]))},
                "beats_baselines": metrics["beats_baselines"][precision][p],
                "residues_per_s": metrics["throughput"][precision]["residues_per_s"],
                "teacher_residues_per_s": metrics["throughput"]["teacher"]["residues_per_s"],
                "size_bytes": metrics.get("sizes", {}).get(f"{precision}_bytes"),
                "n_test": metrics["n_test"],
                **{PROBE_COLUMN.format(name): probe["models"][precision]["normalised_mcc"]
                   for name, probe in probes.items() if probe["status"] == "ok"},
            })
    return rows


def plot_gains(table: pd.DataFrame, path: Path) -> None:
    """Per pooling (rows) and baseline (columns): each variant's mean per-sequence cosine gain over
    the baseline with its 95% bootstrap interval, fp32 and int8; zero marked."""
    from matplotlib.figure import Figure

    poolings, variants = list(dict.fromkeys(table["pooling"])), list(dict.fromkeys(table["variant"]))
    fig = Figure(figsize=(5.0 * len(BASELINES), 0.6 * len(variants) * len(poolings) + 1.6 * len(poolings)),
                 layout="constrained")
    y = np.arange(len(variants))
    for row, p in enumerate(poolings):
        for col, baseline in enumerate(BASELINES):
            ax = fig.add_subplot(len(poolings), len(BASELINES), row * len(BASELINES) + col + 1)
            for offset, precision in ((-0.15, "fp32"), (0.15, "int8")):
                part = table[(table["pooling"] == p) & (table["precision"] == precision)].set_index("variant")
                gain = part.loc[variants, f"gain_vs_{baseline}"].to_numpy(float)
                low = part.loc[variants, f"gain_vs_{baseline}_ci_low"].to_numpy(float)
                high = part.loc[variants, f"gain_vs_{baseline}_ci_high"].to_numpy(float)
                ax.errorbar(gain, y + offset, xerr=[gain - low, high - gain], fmt="o", capsize=3,
                            color=COLOURS[precision], label=precision)
            ax.axvline(0.0, color="black", linewidth=0.8)
            ax.set_yticks(y, variants)
            ax.set_ylim(len(variants) - 0.5, -0.5)  # first variant on top
            ax.set(title=f"{p} pooling: gain over {baseline}", xlabel="mean cosine gain (95% interval)")
    if poolings:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    _save(fig, path)


def summarize(metrics_paths: Sequence[str | Path], out_tsv: str | Path, out_png: str | Path) -> pd.DataFrame:
    """``summary.tsv`` (one row per variant, precision and pooling, plus ``probe_<name>`` columns)
    and a plot of each variant's gain over the baselines (:func:`plot_gains`)."""
    rows = [row for path in metrics_paths for row in summary_rows(json.loads(Path(path).read_text()))]
    probe_columns = list(dict.fromkeys(c for row in rows for c in row if c not in SUMMARY_COLUMNS))
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS) + probe_columns)
    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_gains(table, Path(out_png))
    return table
