"""The prepared GPU run, proven on the CPU: ``benchmarks/gpu/run.sh --dry-run`` executes every part at tiny
sizes and writes the files ``benchmarks.gpu.merge`` puts into a copy of the docs; the carried-wheel list is
pinned by the lock and stays out of git."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.gpu import carry, merge
from benchmarks.gpu.run import PARTS
from tests.pipeline_fixtures import REPO

DRY_RUN_SECONDS = 180  # the bound for the dry run on 2 CPU cores


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu-run")
    start = time.perf_counter()
    done = subprocess.run([str(REPO / "benchmarks" / "gpu" / "run.sh"), "--dry-run"], cwd=REPO,
                          env={**os.environ, "OUT": str(out)}, capture_output=True, text=True, timeout=600)
    return out, time.perf_counter() - start, done


@pytest.mark.gpu_run
def test_dry_run_executes_every_part_in_time(dry_run) -> None:
    out, seconds, done = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line.split("\t") for line in (out / "parts.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [p.name for p in PARTS]
    assert all(r[1] == "ok" for r in rows), rows
    assert seconds < DRY_RUN_SECONDS, f"dry run took {seconds:.0f} s"


@pytest.mark.gpu_run
def test_dry_run_writes_the_figures(dry_run) -> None:
    out, _, _ = dry_run
    environment = json.loads((out / "environment.json").read_text())
    assert environment["device"] == "cpu (dry run)" and environment["modules"]["protkit"] != "missing"
    b12 = json.loads((out / "results" / "B12.json").read_text())
    assert b12["status"] == "ok" and b12["figures"]["teacher bf16, sorted token budget"] > 0
    assert {"B5", "B11"} <= {p.stem for p in (out / "results").glob("*.json")}
    tests = (out / "cuda-tests.xml").read_text()
    assert 'failures="0"' in tests and 'errors="0"' in tests and 'skipped="0"' in tests
    recorded = [json.loads(line) for line in (out / "fidelity.jsonl").read_text().splitlines()]
    assert len({r["test"] for r in recorded}) >= 5 and all(r["device"] == "cpu" for r in recorded)
    demo = json.loads((out / "demo.json").read_text())
    assert demo["exit_status"] == 0 and demo["jobs"] >= 5


@pytest.mark.gpu_run
def test_merge_puts_the_figures_into_the_docs(dry_run, tmp_path: Path) -> None:
    out, _, _ = dry_run
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    before = (docs / "benchmarks.md").read_text()
    assert merge.main([str(out), "--docs", str(docs)]) == 0
    text = (docs / "benchmarks.md").read_text()
    assert "## B12 GPU: teacher" in text and "GPU run: CUDA-marked tests" in text and "GPU run: parts" in text
    assert "| B12 | cpu | teacher bf16 vs fp32: min pooled cosine | >= 0.999 |" in text
    kept = [line for line in before.splitlines() if line.startswith("## B1 ")]
    assert kept and all(line in text for line in kept)  # the CPU sections stay
    scaling = (docs / "scaling.md").read_text()
    assert "### Measured on a GPU (cpu" in scaling and "Not measured yet" not in scaling
    assert scaling.count(merge.SCALING_START) == 1


def test_merge_of_an_empty_folder_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert merge.main([str(tmp_path), "--docs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("protkit: error: ")


def test_every_carried_wheel_is_pinned_by_the_lock() -> None:
    pinned = carry.pinned(carry.carried_names())
    assert len(pinned) == len(carry.carried_names()) and all("==" in p for p in pinned)
    assert "torchao==" in " ".join(pinned)


def test_an_unpinned_wheel_names_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("torchao==0.18.0\n")
    with pytest.raises(SystemExit, match="pins no version of snakemake"):
        carry.pinned(["torchao", "snakemake"], lock)


def test_the_carried_folder_stays_out_of_git() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", ".gpu/wheels-py3.12/x.whl"], cwd=REPO)
    assert ignored.returncode == 0
