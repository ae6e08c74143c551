"""The report leads with numbers: ``protkit.headline`` turns the stage summaries into the landing page's
tables, and ``snakemake --report`` of a tiny run shows them on the landing page, with the headline file
first (category "1. Summary") and a cluster map per embedded input under "3. Search"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline_fixtures import snakemake, tiny_config, write_config
from protkit.headline import headline_html, write_headline

EVAL = pd.DataFrame([
    {"variant": v, "precision": x, "pooling": p, "cosine_mean": c, "composition_cosine_mean": comp,
     "beats_baselines": x == "fp32" or p == "mean", "residues_per_s": r, "backend": b,
     "teacher_residues_per_s": 1000.0, "teacher_backend": "torch bf16", "device": "cuda:0", "n_test": 220,
     "probe_membrane": m}
    for v in ("small", "large")
    for x, r, b, m in (("fp32", 6000.0, "torch fp32", 0.86), ("int8", 4800.0, "torchao int8", 0.84))
    for p, c, comp in (("cls", 0.71828, 0.6885), ("mean", 0.96453, 0.9628))
])
SEARCH = pd.DataFrame([
    {"model": "small", "name": "proteome", "query": "", "proteins": 2100, "dedup_groups": 1686,
     "largest_dedup_group": 15, "clusters": 20, "largest_cluster": 190},
    {"model": "small", "name": "proteome", "query": "LuxC", "queries": 12, "queries_with_hits": 11,
     "median_top_score": 0.99032},
])
FINETUNE = pd.DataFrame([
    {"task": "membrane", "model": "small", "status": "ok", "metric": "mcc", "finetuned_test": 0.4912,
     "frozen_probe_test": 0.4706, "composition_test": 0.487, "note": ""},
    {"task": "no_test", "model": "large", "status": "ok", "metric": "spearman", "finetuned_valid": 0.25, "note": ""},
    {"task": "<loc>", "model": "small", "status": "skipped", "note": "skipped: deeploc.fasta absent (optional task)"},
])


def cells(html: str) -> list[list[str]]:
    """The rows of every table in ``html`` as lists of cell texts."""
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]


def test_headline_tables() -> None:
    html = headline_html(EVAL, SEARCH, FINETUNE)
    rows = cells(html)
    assert ["small", "cls", "0.7183", "0.7183", "0.6885", "yes / NO"] in rows
    assert ["small", "mean", "0.9645", "0.9645", "0.9628", "yes / yes"] in rows
    # speed: teacher and both students, each with its backend, and the speed-up over the teacher
    assert ["small", "teacher", "torch bf16", "1,000", "1.0×"] in rows
    assert ["", "student fp32", "torch fp32", "6,000", "6.0×"] in rows
    assert ["", "student int8", "torchao int8", "4,800", "4.8×"] in rows
    assert "Residues per second on cuda:0" in html
    assert ["large", "membrane", "0.860", "0.840"] in rows  # probes: normalised MCC, fp32 / int8
    assert ["small", "proteome", "2,100", "1,686 (15)", "20 (190)"] in rows
    assert ["small", "proteome", "LuxC", "11 of 12", "0.990"] in rows
    assert ["membrane", "small", "mcc", "0.491", "0.471", "0.487"] in rows
    assert ["no_test", "large", "spearman", "0.250 (validation)", "–", "–"] in rows
    assert ["&lt;loc&gt;", "small", "", "skipped", "", ""] in rows and "deeploc.fasta absent" in html  # escaped
    assert html.startswith('<meta charset="utf-8">') and 'class="protkit-headline"' in html


def test_headline_without_search_finetune_probes_or_backends(tmp_path: Path) -> None:
    old = EVAL.drop(columns=["backend", "teacher_backend", "device", "probe_membrane"])  # an older summary.tsv
    old.to_csv(tmp_path / "summary.tsv", sep="\t", index=False)
    html = write_headline(tmp_path / "summary.tsv", tmp_path / "report" / "headline.html")
    assert (tmp_path / "report" / "headline.html").read_text() == html
    rows = cells(html)
    assert ["", "student int8", "torchao int8", "4,800", "4.8×"] in rows and ["small", "teacher", "torch", "1,000",
                                                                                "1.0×"] in rows
    assert "<h4>Probes</h4>" not in html and "<h4>Search</h4>" not in html and "<h4>Fine-tuning</h4>" not in html


def stage_metrics(variant: str, cosines: list[float]) -> dict:
    """A v1 variant's stages.json, as protkit.evaluate.stage_run writes it (the keys the headline reads)."""
    return {"variant": variant, "teacher_layers": [7, 15, 22, 29], "pooled_cosine_last": 0.98765,
            "mlm": {"top1": 0.9123, "macro_f1": 0.6543, "residues": 1000}, "throughput": {"speedup": 31.4},
            "stages": [{"stage": i + 1, "cosine_mean": c, "cka": c - 0.1} for i, c in enumerate(cosines)]}


def test_headline_shows_each_v1_students_stages(tmp_path: Path) -> None:
    path = tmp_path / "eval" / "tiny-v1" / "stages.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stage_metrics("tiny-v1", [0.93, 0.98, 0.83, 0.74])))
    html = write_headline(None, tmp_path / "headline.html", stage_metrics=[path])
    rows = cells(html)
    assert rows[0] == ["variant", "stage", "teacher block", "cosine", "CKA", "MLM top-1 / F1", "pooled", "vs teacher"]
    assert ["tiny-v1", "1", "7", "0.9300", "0.8300", "", "", ""] in rows
    assert ["", "4", "29", "0.7400", "0.6400", "0.912 / 0.654", "0.9877", "31.4×"] in rows
    assert "<h4>Held-out cosine to the teacher</h4>" not in html  # no ProtHash 0.2 variant, no summary.tsv
    both = headline_html(EVAL, stages={"tiny-v1": stage_metrics("tiny-v1", [0.5] * 4)})
    assert both.index("<h4>Held-out cosine") < both.index("<h4>ProtHash 1.0 stages</h4>")


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """A tiny run (one variant, one embedded input), its report, and the report's HTML."""
    workdir = tmp_path_factory.mktemp("report")
    config = tiny_config(n_variants=1, shards=1)
    config["embed"]["models"] = ["v0"]
    configfile = write_config(workdir, config)
    snakemake(workdir, configfile, "--cores", "2")
    snakemake(workdir, configfile, "--report", str(workdir / "report.html"))
    return workdir, config, (workdir / "report.html").read_text()


def report_variable(html: str, name: str) -> object:
    """A JSON value the report page assigns (``var name = ...;``)."""
    return json.loads(re.search(rf"^\s*var {name} = (.*?);$", html, re.M).group(1))


def test_report_leads_with_the_headline(tiny_report: tuple[Path, dict, str]) -> None:
    workdir, config, html = tiny_report
    headline = (workdir / "results" / "report" / "headline.html").read_text()
    summary = pd.read_csv(workdir / "results" / "eval" / "summary.tsv", sep="\t")
    landing = report_variable(html, "workflow_desc")
    assert headline.split('<div class="protkit-headline">')[1].strip() in landing  # the tables, on the landing page
    fp32_cls = summary[(summary.precision == "fp32") & (summary.pooling == "cls")].iloc[0]
    assert f"<td>v0</td><td>cls</td><td>{fp32_cls.cosine_mean:.4f}</td>" in landing
    assert "<td>torchao int8</td>" in landing and "<h4>Search</h4>" in landing and "<h4>Fine-tuning</h4>" in landing
    assert "random demo model" in landing and "No headline table" not in landing
    assert "<td>start_codon</td><td>v0</td><td>mcc</td>" in landing and "(validation)" in landing  # no test set
    categories = report_variable(html, "categories")
    assert sorted(categories)[0] == "1. Summary"  # the report's menu sorts categories by name
    assert "results/report/headline.html" in categories["1. Summary"]["Other"]
    maps = categories["3. Search"]["v0"]
    assert maps == [f"results/search/v0/{name}/map.png" for name in config["embed"]["inputs"]]
    assert (workdir / maps[0]).read_bytes()[:4] == b"\x89PNG"
