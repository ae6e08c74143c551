"""The evaluation report of one variant: ``metrics.json``, ``report.md``, ``probes.tsv`` and the
plots (:mod:`protkit.evaluate.plots`). Every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from protkit.evaluate.plots import (
    PLOTS, THROUGHPUT_MODELS, plot_by_length, plot_histograms, plot_recall_vs_size, plot_throughput,
    throughput_backend,
)
from protkit.evaluate.results import Evaluation
from protkit.io.atomic import atomic_path, write_json, write_text
from protkit.io.outputs import claim_outputs

PROBE_MODELS = {"teacher": "teacher", "fp32": "fp32 student", "int8": "int8 student", "random": "random control"}


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
            "| bits | planes | bytes/protein | teacher's, Hamming | student's own, Hamming "
            "| student's own, re-ranked |",
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
            f"{'above' if fp32 else 'not wholly above'} zero. **The int8 student "
            f"{'beats' if int8 else 'does NOT beat'} both baselines** by the same test.",
            "",
            "| student | baseline | mean cosine gain | 95% interval | sequences won |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {x} | {b} | {d['mean']:+.4f} | [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] "
                f"| {d['win_fraction']:.0%} |"
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
    lines += ["## Throughput", "", f"On {metrics['device']}, the same held-out proteins and batches for each model. "
              "`protkit embed --int8` on a CPU runs onnxruntime's int8, which is not timed here.", "",
              "| model | backend | residues/s | vs teacher | sequences | seconds |",
              "| --- | --- | --- | --- | --- | --- |"]
    teacher = metrics["throughput"].get("teacher", {}).get("residues_per_s")
    for name in sorted(metrics["throughput"], key=list(THROUGHPUT_MODELS).index):
        t = metrics["throughput"][name]
        speedup = f"{t['residues_per_s'] / teacher:.1f}×" if teacher and t["residues_per_s"] else "–"
        lines.append(f"| {THROUGHPUT_MODELS[name]} | {throughput_backend(metrics, name)} "
                     f"| {_fmt(t['residues_per_s'], 0)} | {speedup} | {t['sequences']} | {_fmt(t['seconds'], 3)} |")
    if "sizes" in metrics:
        s = metrics["sizes"]
        lines += ["", f"Size on disk: fp32 {s['fp32_bytes'] / 1e6:.2f} MB, int8 {s['int8_bytes'] / 1e6:.2f} MB "
                      f"({100 * s['int8_ratio']:.1f}% of fp32)."]
    lines += ["", "## Plots", ""] + [f"- [{name}]({file})" for name, file in PLOTS.items()]
    return "\n".join(lines) + "\n"


def write_report(evaluation: Evaluation, out_dir: str | Path) -> None:
    """``metrics.json``, ``report.md``, ``probes.tsv`` and the four PNGs of :data:`PLOTS` in ``out_dir``."""
    out_dir = Path(out_dir)
    with claim_outputs(directories=[out_dir]):
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_histograms(evaluation, out_dir / PLOTS["histogram"])
        plot_by_length(evaluation, out_dir / PLOTS["by_length"])
        plot_throughput(evaluation.metrics, out_dir / PLOTS["throughput"])
        plot_recall_vs_size(evaluation.metrics, out_dir / PLOTS["recall_vs_size"])
        write_text(out_dir / "report.md", markdown(evaluation.metrics))
        with atomic_path(out_dir / "probes.tsv") as tmp:
            probe_table(evaluation.metrics["probes"]).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
        write_json(out_dir / "metrics.json", evaluation.metrics)
