"""The report's landing page (``workflow/rules/report.smk``): ``results/report/headline.html``, the
pipeline's numbers in five small tables, read from the stage summaries.

- held-out cosine to the teacher per variant, pooling and precision, beside the composition baseline;
- speed: residues/s of the teacher and of each student, each with the backend it ran on;
- probes: the students' normalised MCC per probe;
- search: proteins, near-duplicate groups and clusters per model and input, and the query hits;
- fine-tuning: each task's test score beside the frozen probe and the composition baseline;
- ProtHash 1.0 students: per stage, residue cosine and linear CKA to the teacher block, MLM agreement,
  speed against the teacher (``stages.json`` of :mod:`protkit.evaluate.stage_run`).

The file is an HTML fragment (its own scoped style, no ``<html>``): the report shows it as a result
and ``workflow/report/workflow.rst`` puts it on the landing page. Tables stay narrow (the landing
page's text column is about 500 pixels wide).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from protkit.evaluate.plots import THROUGHPUT_BACKENDS, THROUGHPUT_MODELS
from protkit.evaluate.summary import PROBE_COLUMN
from protkit.io.atomic import write_text
from protkit.io.outputs import claim_outputs

STYLE = """<style>
.protkit-headline { font-size: 0.85rem; }
.protkit-headline h4 { margin: 0.9rem 0 0.2rem 0; font-size: 0.95rem; }
.protkit-headline p { margin: 0.1rem 0 0.3rem 0; }
.protkit-headline table { border-collapse: collapse; margin: 0.2rem 0 0.4rem 0; }
.protkit-headline th, .protkit-headline td { border-bottom: 1px solid #ddd; padding: 0.1rem 0.4rem;
  text-align: right; }
.protkit-headline td { white-space: nowrap; }
.protkit-headline th:first-child, .protkit-headline td:first-child { text-align: left; }
.protkit-headline th { background: #f4f4f4; }
</style>"""


def fmt(value: object, digits: int = 4, ratio: bool = False) -> str:
    """A number for a table cell (``–`` when missing); ``ratio``: ``6.2×``; integers with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "–"
    if isinstance(value, str):
        return value
    if ratio:
        return f"{value:.1f}×"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain ``<table>`` with the cells escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def section(title: str, note: str, table: str) -> str:
    return f"<h4>{html.escape(title)}</h4>\n<p>{html.escape(note)}</p>\n{table}\n"


def first_row(table: pd.DataFrame, **match: str) -> pd.Series:
    """The first row of ``table`` whose columns equal ``match``."""
    rows = table
    for column, value in match.items():
        rows = rows[rows[column] == value]
    return rows.iloc[0]


def cosine_section(summary: pd.DataFrame) -> str:
    """Per variant and pooling: fp32 and int8 cosine, the composition baseline, and whether both beat both baselines."""
    rows = []
    for variant in dict.fromkeys(summary["variant"]):
        for pooling in dict.fromkeys(summary[summary["variant"] == variant]["pooling"]):
            fp32, int8 = (first_row(summary, variant=variant, pooling=pooling, precision=x) for x in ("fp32", "int8"))
            beats = " / ".join("yes" if str(r["beats_baselines"]) == "True" else "NO" for r in (fp32, int8))
            rows.append([variant, pooling, fmt(fp32["cosine_mean"]), fmt(int8["cosine_mean"]),
                         fmt(fp32["composition_cosine_mean"]), beats])
    n_test = ", ".join(str(n) for n in dict.fromkeys(summary["n_test"]))
    note = (f"Mean cosine to the teacher's pooled embedding over {n_test} held-out proteins. Beats both: the 95% "
            "interval of the per-protein gain over the untrained student and over the composition baseline "
            "lies above zero (fp32 / int8).")
    header = ["variant", "pooling", "fp32", "int8", "composition", "beats both"]
    return section("Held-out cosine to the teacher", note, html_table(header, rows))


def speed_section(summary: pd.DataFrame) -> str:
    """Per variant: the teacher's and each student's residues/s, with the backend each ran on (a summary
    written before protkit recorded backends: the evaluation's, torch and torchao)."""
    rows = []
    for variant in dict.fromkeys(summary["variant"]):
        fp32 = first_row(summary, variant=variant, precision="fp32")
        teacher = fp32["teacher_residues_per_s"]
        rows.append([variant, THROUGHPUT_MODELS["teacher"], fmt(fp32.get("teacher_backend") or "torch"),
                     fmt(teacher, 0), fmt(1.0, ratio=True)])
        for precision in ("fp32", "int8"):
            row = first_row(summary, variant=variant, precision=precision)
            speedup = row["residues_per_s"] / teacher if teacher and not math.isnan(teacher) else None
            rows.append(["", THROUGHPUT_MODELS[precision], fmt(row.get("backend") or THROUGHPUT_BACKENDS[precision]),
                         fmt(row["residues_per_s"], 0), fmt(speedup, ratio=True)])
    devices = ", ".join(str(d) for d in dict.fromkeys(summary["device"])) if "device" in summary else "its device"
    note = (f"Residues per second on {devices}, measured in the evaluate job on the same held-out proteins. "
            "protkit embed --int8 on a CPU runs onnxruntime's int8, which is not timed here.")
    return section("Speed", note, html_table(["variant", "model", "backend", "residues/s", "vs teacher"], rows))


def probe_section(summary: pd.DataFrame) -> str:
    """Per variant and probe: the normalised MCC of the fp32 and the int8 student ("" without probes)."""
    prefix = PROBE_COLUMN.format("")
    probes = [c for c in summary.columns if c.startswith(prefix)]
    if not probes:
        return ""
    rows = []
    for variant in dict.fromkeys(summary["variant"]):
        fp32, int8 = (first_row(summary, variant=variant, precision=x) for x in ("fp32", "int8"))
        rows += [[variant if i == 0 else "", c.removeprefix(prefix), fmt(fp32[c], 3), fmt(int8[c], 3)]
                 for i, c in enumerate(probes)]
    note = ("Normalised MCC of a logistic-regression probe on frozen embeddings: (student − random) / "
            "(teacher − random); 1 = as informative as the teacher, 0 = as random vectors.")
    return section("Probes", note, html_table(["variant", "probe", "fp32", "int8"], rows))


def search_section(search: pd.DataFrame) -> str:
    """Per model and input: proteins, near-duplicate groups and clusters; per query file, its hits."""
    inputs = search[search["query"] == ""]
    rows = [[str(r["model"]), str(r["name"]), fmt(r["proteins"], 0),
             f"{fmt(r['dedup_groups'], 0)} ({fmt(r['largest_dedup_group'], 0)})",
             f"{fmt(r['clusters'], 0)} ({fmt(r['largest_cluster'], 0)})"] for _, r in inputs.iterrows()]
    text = html_table(["model", "input", "proteins", "dedup groups (largest)", "clusters (largest)"], rows)
    queries = search[search["query"] != ""]
    if len(queries):
        rows = [[str(r["model"]), str(r["name"]), str(r["query"]), f"{fmt(r['queries_with_hits'], 0)} of "
                 f"{fmt(r['queries'], 0)}", fmt(r["median_top_score"], 3)] for _, r in queries.iterrows()]
        text += "\n" + html_table(["model", "input", "query file", "with hits", "median top cosine"], rows)
    note = "Near-duplicate groups and clusters of each embedded input (maps: the Search results)."
    return section("Search", note, text)


def finetune_section(finetune: pd.DataFrame) -> str:
    """Per task: the fine-tuned model's test score beside the frozen probe and the composition baseline."""
    rows, skipped = [], []
    for _, r in finetune.iterrows():
        if r["status"] != "ok":
            skipped.append(f"{r['task']}: {r['note']}")
            rows.append([str(r["task"]), str(r["model"]), "", "skipped", "", ""])
            continue
        tested = not pd.isna(r.get("finetuned_test"))
        score = fmt(r["finetuned_test"], 3) if tested else f"{fmt(r.get('finetuned_valid'), 3)} (validation)"
        rows.append([str(r["task"]), str(r["model"]), str(r["metric"]), score, fmt(r["frozen_probe_test"], 3),
                     fmt(r["composition_test"], 3)])
    note = ("Test score of each fine-tuning task (metric: MCC, Spearman or macro F1 by task); a task without "
            "test proteins shows its validation score, without the baselines.")
    note += "".join(f" {s}." for s in skipped)
    header = ["task", "model", "metric", "fine-tuned", "frozen probe", "composition"]
    return section("Fine-tuning", note, html_table(header, rows))


def stages_section(stages: dict[str, dict]) -> str:
    """Per ProtHash 1.0 variant (name -> its ``stages.json``) and stage: teacher block, residue cosine,
    linear CKA; then MLM top-1 / macro-F1, the last stage's pooled cosine and the speed-up."""
    rows = []
    for variant, metrics in stages.items():
        mlm, speed = metrics.get("mlm") or {}, (metrics.get("throughput") or {}).get("speedup")
        for i, stage in enumerate(metrics["stages"]):
            last = i == len(metrics["stages"]) - 1
            rows.append([variant if i == 0 else "", str(stage["stage"]), str(metrics["teacher_layers"][i]),
                         fmt(stage["cosine_mean"]), fmt(stage["cka"]),
                         f"{fmt(mlm.get('top1'), 3)} / {fmt(mlm.get('macro_f1'), 3)}" if last and mlm else "",
                         fmt(metrics.get("pooled_cosine_last")) if last else "",
                         fmt(speed, ratio=True) if last and speed is not None else ""])
    note = ("ProtHash 1.0 students (four stages, each matched per residue to one teacher block): mean residue "
            "cosine through the stage's adapter and linear CKA of its native vectors, on the held-out proteins; "
            "the MLM head's top-1 / macro-F1 against the teacher's argmax; mean-pooled cosine of the last stage; "
            "residues/s against the teacher's.")
    header = ["variant", "stage", "teacher block", "cosine", "CKA", "MLM top-1 / F1", "pooled", "vs teacher"]
    return section("ProtHash 1.0 stages", note, html_table(header, rows))


def headline_html(summary: pd.DataFrame | None, search: pd.DataFrame | None = None,
                  finetune: pd.DataFrame | None = None, stages: dict[str, dict] | None = None) -> str:
    """The landing page's fragment from the evaluation summary (None: no ProtHash 0.2 variant) and, when
    given, the search and fine-tuning summaries and the v1 variants' stage tables."""
    parts = [cosine_section(summary), speed_section(summary), probe_section(summary)] if summary is not None else []
    if stages:
        parts.append(stages_section(stages))
    if search is not None and len(search):
        parts.append(search_section(search))
    if finetune is not None and len(finetune):
        parts.append(finetune_section(finetune))
    return f'<meta charset="utf-8">\n{STYLE}\n<div class="protkit-headline">\n{"".join(parts)}</div>\n'


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A summary TSV with empty cells as ``""`` in text columns (search's ``query``) and NaN in numbers."""
    table = pd.read_csv(path, sep="\t")
    text = [c for c in table.columns if not (is_numeric_dtype(table[c]) or is_bool_dtype(table[c]))]
    table[text] = table[text].fillna("")
    return table


def write_headline(eval_summary: str | Path | None, output: str | Path, search_summary: str | Path | None = None,
                   finetune_summary: str | Path | None = None, stage_metrics: Sequence[str | Path] = ()) -> str:
    """``output`` (headline.html) from ``results/eval/summary.tsv`` and, when given, the search and
    fine-tuning ``summary.tsv`` and the v1 variants' ``eval/<variant>/stages.json``; returns the HTML."""
    inputs = [p for p in (eval_summary, search_summary, finetune_summary, *stage_metrics) if p]
    with claim_outputs([output], inputs=inputs):
        stages = {Path(p).parent.name: json.loads(Path(p).read_text(encoding="utf-8")) for p in stage_metrics}
        text = headline_html(read_tsv(eval_summary) if eval_summary else None,
                             read_tsv(search_summary) if search_summary else None,
                             read_tsv(finetune_summary) if finetune_summary else None, stages)
        write_text(output, text)
    return text
