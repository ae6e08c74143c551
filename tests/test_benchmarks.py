"""Benchmark harness (benchmarks/): interleaved timing, sampling, goal verdicts, failure reporting,
and a --quick smoke run of B1-B7 through run_all.py on the real protein data."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds benchmarks/

from benchmarks import b6_scaling, common, run_all
from benchmarks.common import Goal, Result, Table

CPU = torch.device("cpu")


def test_interleaved_rotates_order_warms_up_and_keeps_outputs() -> None:
    calls: list[tuple[str, tuple[int, ...]]] = []

    def variant(name: str):
        def run(items):
            calls.append((name, tuple(items)))
            return [f"{name}:{i}" for i in items]
        return run

    rounds = common.strided_rounds(7, 3)
    assert rounds == [[0, 3, 6], [1, 4], [2, 5]]
    timings = common.interleaved({"a": variant("a"), "b": variant("b"), "c": variant("c")},
                                 rounds, [[9], [8, 7]], CPU, repeats={"c": 2})
    assert calls[:6] == [("a", (9,)), ("a", (8, 7)), ("b", (9,)), ("b", (8, 7)), ("c", (9,)), ("c", (8, 7))]
    timed = [name for name, _ in calls[6:]]
    assert timed == ["a", "b", "c", "c", "b", "c", "c", "a", "c", "c", "a", "b"]
    assert timings.outputs["b"][1] == ["b:1", "b:4"]
    assert all(len(s) == 3 and min(s) >= 0 for s in timings.seconds.values())
    timings.seconds = {"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 1.0], "c": [1.0, 1.0, 1.0]}
    assert timings.speedups("b", "a") == [2.0, 4.0, 9.0]
    assert timings.speedup("b", "a") == 4.0


def test_sample_is_seeded_nested_and_filtered(shared_data: Path) -> None:
    small = common.sample_proteins(10, shared_data)
    large = common.sample_proteins(50, shared_data)
    assert [p.id for p in small] == [p.id for p in large[:10]]
    short = common.sample_proteins(20, shared_data, max_residues=100)
    assert all(len(p.sequence) <= 100 for p in short)
    available = len(common.load_proteins(shared_data))
    oversized = common.sample_proteins(available + 5, shared_data)
    assert len({p.id for p in oversized}) == available  # all real ones, then repeats
    tokens = common.tokenize(oversized[:30])
    assert max(len(t) for t in tokens) <= common.MAX_LENGTH
    assert common.residues(tokens) == sum(min(len(p.sequence), 1022) for p in oversized[:30])


def test_missing_data_is_a_skip_naming_the_directory(tmp_path: Path) -> None:
    result = common.execute(b6_scaling, CPU, True, tmp_path)
    assert result.status == "skipped"
    assert str(tmp_path) in result.message and "deeploc_test.fasta" in result.message
    assert "SKIPPED" in result.markdown("cmd", "today")


def test_goal_verdicts_and_failed_checks_are_reported() -> None:
    assert Goal("g", 1.2, 1.25).passed
    assert not Goal("g", 1.2, 1.19).passed
    assert not Goal("g", 1.2, 3.0, condition="cosine 0.99 >= 0.999", condition_met=False).passed
    assert not Goal("g", 1.2, None).passed
    assert Goal("g", 1.2, 3.0, "c", False).row()[-1] == "MISS"
    assert Goal("g", 1.3, None, "no torch.compile run", False).row()[2:] == ["n/a", "no torch.compile run", "MISS"]
    result = Result("B9", "demo", tables=[Table("t", ["x"], [["1"]])], goals=[Goal("g", 2.0, 1.0)])
    result.require(True, "fine")
    assert result.status == "ok"
    result.require(False, "parity 3e-2 exceeds 1e-4")
    assert result.status == "failed" and "parity 3e-2 exceeds 1e-4" in result.message
    text = result.markdown("cmd", "today")
    assert "FAILED: correctness check failed: parity 3e-2" in text and "| g | >= 2x | 1.00x | - | MISS |" in text


def test_flop_count_matches_the_formula() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3))
    assert common.nonembedding_params(model) == 15
    assert common.forward_flops(15, n_layers=2, width=4, lengths=[3, 5]) == 2 * 15 * 8 + 4 * 4 * 2 * (9 + 25)


def test_only_rejects_unknown_benchmarks(capsys: pytest.CaptureFixture) -> None:
    assert run_all.parse_only("b1, B3") == ["B1", "B3"]
    with pytest.raises(SystemExit):
        run_all.build_parser().parse_args(["--only", "B9"])
    assert "B9" in capsys.readouterr().err


def test_quick_run_of_every_benchmark_writes_the_report(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    status = run_all.main(["--quick", "--data", str(shared_data), "--out", str(out)])
    text = out.read_text()
    assert status == 0, text
    for key in run_all.BENCHMARKS:
        assert re.search(rf"^## {key} .*\(cpu\)$", text, re.M), f"{key} section missing"
    assert "QUICK SMOKE RUN" in text
    assert common.cpu_model() in text and torch.__version__ in text
    assert "--quick --data" in text  # the exact command
    verdicts = re.findall(r"\| (PASS|MISS) \|$", text, re.M)
    assert len(verdicts) >= 2 * 7  # every goal in the summary and in its section
    assert "parity" in text and "cosine" in text and "peak RSS" in text
    assert not list(tmp_path.glob(".benchmarks.md.*"))  # atomic write left no temporary file


def test_partial_runs_leave_the_report_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "docs" / "benchmarks.md"
    monkeypatch.setattr(run_all, "DEFAULT_OUT", report)
    assert run_all.main(["--only", "B6", "--data", str(tmp_path)]) == 0  # data absent: skipped, not failed
    assert not report.exists()
    assert run_all.main(["--data", str(tmp_path)]) == 0  # every benchmark: the report is written
    text = report.read_text()
    assert text.count("SKIPPED: real protein data absent") == len(run_all.BENCHMARKS)
