"""The evaluation summary across variants: ``summary.tsv`` (one row per variant, precision and
pooling) and a plot of each variant's gain over the baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from protkit.evaluate.plots import COLOURS, throughput_backend
from protkit.evaluate.results import BASELINES, PRECISIONS
from protkit.io.atomic import atomic_path
from protkit.io.figures import save_figure
from protkit.io.outputs import claim_outputs

SUMMARY_COLUMNS = (
    "variant", "precision", "pooling", "cosine_mean", "cosine_median", "cosine_p5", "cosine_min", "recall_at_k",
    "int8_vs_fp32_mean", "untrained_cosine_mean", "composition_cosine_mean",
    "gain_vs_untrained", "gain_vs_untrained_ci_low", "gain_vs_untrained_ci_high",
    "gain_vs_composition", "gain_vs_composition_ci_low", "gain_vs_composition_ci_high", "beats_baselines",
    "residues_per_s", "backend", "teacher_residues_per_s", "teacher_backend", "device", "size_bytes", "n_test",
)
PROBE_COLUMN = "probe_{}"  # per probe: normalised MCC of the row's precision


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
                "backend": throughput_backend(metrics, precision),
                "teacher_residues_per_s": metrics["throughput"]["teacher"]["residues_per_s"],
                "teacher_backend": throughput_backend(metrics, "teacher"),
                "device": metrics["device"],
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
    save_figure(fig, path)


def summarize(metrics_paths: Sequence[str | Path], out_tsv: str | Path, out_png: str | Path) -> pd.DataFrame:
    """``summary.tsv`` (one row per variant, precision and pooling, plus ``probe_<name>`` columns)
    and a plot of each variant's gain over the baselines (:func:`plot_gains`)."""
    with claim_outputs([out_tsv, out_png], inputs=metrics_paths):
        rows = [row for path in metrics_paths for row in summary_rows(json.loads(Path(path).read_text()))]
        probe_columns = list(dict.fromkeys(c for row in rows for c in row if c not in SUMMARY_COLUMNS))
        table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS) + probe_columns)
        with atomic_path(out_tsv) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        plot_gains(table, Path(out_png))
    return table
