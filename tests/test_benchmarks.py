"""Benchmark harness (benchmarks/): interleaved timing, sampling, goal verdicts, failure reporting,
and a --quick smoke run of every benchmark (B1-B11) through run_all.py on the real protein data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import b6_scaling, b8_search, common, planted, run_all
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
        run_all.build_parser().parse_args(["--only", "B99"])
    assert "B99" in capsys.readouterr().err


def test_quick_run_of_every_benchmark_writes_the_report(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    status = run_all.main(["--quick", "--data", str(shared_data), "--out", str(out)])
    text = out.read_text()
    assert status == 0, text
    assert {"B10", "B11"} <= set(run_all.BENCHMARKS)
    for key in run_all.BENCHMARKS:
        assert re.search(rf"^## {key} .*\(cpu\)$", text, re.M), f"{key} section missing"
    assert "QUICK SMOKE RUN" in text
    assert common.cpu_model() in text and torch.__version__ in text
    assert "--quick --data" in text  # the exact command
    verdicts = re.findall(r"\| (PASS|MISS) \|$", text, re.M)
    assert len(verdicts) >= 2 * 7  # every goal in the summary and in its section
    assert "parity" in text and "cosine" in text and "peak RSS" in text and "residue cosine p1" in text
    assert "student LoRA residues/s vs teacher LoRA" in text
    assert not list(tmp_path.glob(".benchmarks.md.*"))  # atomic write left no temporary file


def test_partial_runs_leave_the_report_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "docs" / "benchmarks.md"
    monkeypatch.setattr(run_all, "DEFAULT_OUT", report)
    assert run_all.main(["--only", "B6", "--data", str(tmp_path)]) == 0  # data absent: skipped, not failed
    assert not report.exists()
    assert run_all.main(["--data", str(tmp_path)]) == 0  # every benchmark: the report is written
    text = report.read_text()
    assert text.count("SKIPPED: real protein data absent") == len(run_all.BENCHMARKS)


# --- B8: planted near-duplicates, tool outputs, and --update ------------------------------------
def _random_proteins(n: int, seed: int = 1) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(f"P{i}", "".join(rng.choice(list(planted.AMINO_ACIDS), int(rng.integers(100, 400))))) for i in range(n)]


def test_planted_copies_sit_at_their_level_and_are_seeded() -> None:
    proteins = _random_proteins(40)
    copies = planted.plant_copies(proteins, per_level=5, seed=3)
    assert copies == planted.plant_copies(proteins, per_level=5, seed=3)
    assert copies != planted.plant_copies(proteins, per_level=5, seed=4)
    assert len(copies) == 20 and len({c.source_id for c in copies}) == 20 and len({c.id for c in copies}) == 20
    assert all(" " not in c.id and c.id.startswith(f"{c.source_id}|planted") for c in copies)
    assert all(abs(c.identity - c.level) <= 0.015 for c in copies)
    assert {c.level for c in copies} == set(planted.LEVELS)
    source = dict(proteins)
    for copy in planted.plant_copies(proteins, per_level=3, indel_share=0.0):  # substitutions only: count them
        original = source[copy.source_id]
        assert len(copy.sequence) == len(original)
        assert sum(a == b for a, b in zip(copy.sequence, original)) / len(original) == copy.identity
    with pytest.raises(ValueError, match="distinct sources"):
        planted.plant_copies(proteins, per_level=11)


def test_b8_reads_each_tools_output_and_scores_planted_pairs(tmp_path: Path) -> None:
    copies = [planted.Planted("A|planted98|0", "A", 0.98, 0.98, "M"), planted.Planted("B|planted80|0", "B", 0.80, 0.8, "M")]
    m8 = tmp_path / "hits.m8"
    m8.write_text("A|planted98|0\tA|planted98|0\t1.0\nA|planted98|0\tC\t0.9\nA|planted98|0\tA\t0.98\nB\tC\t0.5\n")
    hits = b8_search.m8_hits(m8)
    assert hits == {"A|planted98|0": ["C", "A"], "B": ["C"]}
    found = b8_search.score(b8_search.Report(hits=hits), copies)
    assert found.recall == {0.98: (0.0, 1.0), 0.8: (0.0, 0.0)} and found.other_pairs == 2  # {copy, C}, {B, C}
    assert b8_search.ranked_hits([{"query_id": "q", "hit_id": "b", "rank": 2}, {"query_id": "q", "hit_id": "a", "rank": 1},
                                  {"query_id": "q", "hit_id": "q", "rank": 3}]) == {"q": ["a", "b"]}
    tsv = tmp_path / "c_cluster.tsv"
    tsv.write_text("A\tA\nA\tA|planted98|0\nA\tC\nB\tB\nB|planted80|0\tB|planted80|0\n")
    groups = b8_search.score(b8_search.Report(groups=b8_search.tsv_groups(tsv)), copies)
    assert groups.recall == {0.98: (1.0,), 0.8: (0.0,)} and groups.other_pairs == 2 and groups.detail == "3 clusters"
    clstr = tmp_path / "cd.clstr"
    clstr.write_text(">Cluster 0\n0\t231aa, >A|planted98|0... at 96.97%\n1\t330aa, >A... *\n"
                     ">Cluster 1\n0\t99aa, >B|planted80|0... *\n1\t90aa, >B... at 80.10%\n")
    assert b8_search.clstr_groups(clstr) == {"A|planted98|0": "Cluster 0", "A": "Cluster 0",
                                             "B|planted80|0": "Cluster 1", "B": "Cluster 1"}


def _result(key: str, measured: float, note: str) -> Result:
    return Result(key, f"demo {key}", tables=[Table(f"{key} table", ["x"], [[note]])],
                  goals=[Goal(f"{key} goal", 1.0, measured)], machine="test machine")


def test_update_replaces_one_benchmark_and_keeps_the_rest() -> None:
    old = [_result("B1", 2.0, "b1 old"), _result("B7", 0.5, "b7 old"), _result("B8", 0.5, "b8 old")]
    text = run_all.document(old, "full command", "day 1", 60.0, quick=False)
    assert "goals met: 1 of 3" in text
    updated = run_all.update_document(text, [_result("B8", 3.0, "b8 new")], "only B8", "day 2")
    assert "b8 new" in updated and "b8 old" not in updated and "b1 old" in updated and "b7 old" in updated
    assert "goals met: 2 of 3; missed: B7 B7 goal" in updated and "- re-run alone: B8 on day 2 (`only B8`)" in updated
    assert re.findall(r"^\| (B\d) \| cpu \| B\d goal \| >= 1x \| ([\d.]+x) \| (\w+) \|$", updated, re.M) == [
        ("B1", "2.00x", "PASS"), ("B7", "0.50x", "MISS"), ("B8", "3.00x", "PASS")]
    assert updated.index("## B1") < updated.index("## B7") < updated.index("## B8 demo B8 (cpu)")
    assert "- command: `full command`" in updated  # the rest of the preamble is kept
    again = run_all.update_document(updated, [_result("B8", 3.0, "b8 new")], "only B8", "day 2")
    assert again == updated  # idempotent: one re-run line, one section
    without_b8 = run_all.document(old[:2], "full command", "day 1", 60.0, quick=False)
    added = run_all.update_document(without_b8, [_result("B8", 3.0, "b8 new")], "only B8", "day 2")
    assert added.endswith(_result("B8", 3.0, "b8 new").markdown("only B8", "day 2"))
    with pytest.raises(SystemExit):
        run_all.main(["--only", "B8", "--quick", "--update", "docs/benchmarks.md"])


# --- B9: mutated copies, synthetic caches, ceiling goals ----------------------------------------
def test_b9_copies_are_seeded_nested_and_substituted() -> None:
    from benchmarks import b9_scaling_memory as b9

    sources = [seq for _, seq in _random_proteins(5)]
    copies = list(b9.mutated_copies(sources, 40, seed=2))
    assert copies == list(b9.mutated_copies(sources, 40, seed=2))
    assert copies[:15] == list(b9.mutated_copies(sources, 15, seed=2))  # a smaller input is a prefix
    assert [rid for rid, _ in copies[:3]] == ["copy0", "copy1", "copy2"]
    assert len({seq for _, seq in copies}) == 40  # distinct, though each source is copied 8 times
    for i, (_, seq) in enumerate(copies):
        source = sources[i % len(sources)]
        changed = sum(a != b for a, b in zip(seq, source))
        assert len(seq) == len(source) and 1 <= changed <= b9.SUBSTITUTIONS and set(seq) <= set(planted.AMINO_ACIDS)


def test_b9_synthetic_cache_is_a_readable_teacher_cache(tmp_path: Path) -> None:
    import pandas as pd

    from benchmarks import b9_scaling_memory as b9
    from protkit.data.table import read_dataset
    from protkit.teacher.read import load_pooled

    manifest = b9.write_synthetic_cache(["MKVLAAGIVW" * 20, "GGA" * 30], 50, 16, tmp_path / "cache",
                                        tmp_path / "sequences.parquet", max_length=34, shard_size=16, test_fraction=0.2)
    cached = load_pooled(tmp_path / "cache")
    table = read_dataset(tmp_path / "sequences.parquet")
    assert manifest["shards"] == [f"pooled-0000{k}.parquet" for k in range(4)] and manifest["n_sequences"] == 50
    assert cached.ids == table["id"].tolist() == [f"s{i}" for i in range(50)]
    assert cached.vectors["mean"].shape == (50, 16) and list(cached.splits) == table["split"].tolist()
    assert 0 < (table["split"] == "test").sum() < 25 and table["length"].max() == 32
    pd.testing.assert_series_equal(table["sequence"].str.len(), table["length"].astype(int), check_names=False)


def test_b9_ceiling_goals_pass_below_their_limit() -> None:
    from benchmarks import b9_scaling_memory as b9

    assert b9.LimitGoal("peak", 1500.0, 1200.0).row() == ["peak", "<= 1.50 GB", "1.20 GB", "-", "PASS"]
    assert b9.LimitGoal("growth", 1.2, 1.3, unit="x").row() == ["growth", "<= 1.20x", "1.30x", "-", "MISS"]
    assert not b9.LimitGoal("peak", 1500.0, None).passed


# --- B11: precision metrics -----------------------------------------------------------------------
def test_b11_metrics_on_known_arrays() -> None:
    from benchmarks import b11_precision as b11

    expected = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    got = torch.tensor([[3.0, 4.0], [1.0, 1.0]])  # one element off by 1
    assert b11.mse(got, expected) == pytest.approx(0.25)
    assert b11.relative_l2(got, expected) == pytest.approx(1 / np.sqrt(26))  # ||diff|| / ||expected||, not per row
    assert b11.cosine_percentile(got, expected, 0.0) == pytest.approx(1 / np.sqrt(2))
    assert b11.cosine_percentile(got, expected, 50.0) == pytest.approx((1 + 1 / np.sqrt(2)) / 2)
    rows = torch.ones(201, 2)
    for outliers, p1 in ((1, 1.0), (3, 0.0)):  # p1 of 201 cosines is the 3rd smallest
        turned = rows.clone()
        turned[:outliers] = torch.tensor([1.0, -1.0])  # orthogonal to (1, 1): cosine 0
        assert b11.cosine_percentile(turned, rows, 1.0) == pytest.approx(p1, abs=1e-12)
    assert np.isnan(b11.cosine_percentile(torch.full((3, 2), float("nan")), rows[:3]))
    same = b11.Outputs(expected, expected, 0.0)
    assert b11.errors(same, same) == b11.Errors(0.0, 0.0, pytest.approx(1.0), pytest.approx(1.0))
    assert b11.Errors(1e-6, 1e-2, 0.999, 0.999).within_limits()
    assert not b11.Errors(1e-6, 4e-2, 0.999, 0.999).within_limits()
    assert not b11.Errors(1e-6, 1e-2, 0.99, 0.999).within_limits()
    assert not b11.Errors(float("nan"), float("nan"), float("nan"), float("nan")).within_limits()
    assert b11.CeilingGoal("g", 3e-2, 1.3e-2).row() == ["g", "<= 3e-02", "1.3e-02", "-", "PASS"]
    assert b11.CeilingGoal("g", 3e-2, 4e-2).row()[-1] == "MISS"
    assert b11.CeilingGoal("g", 3e-2, float("nan")).row()[-1] == "MISS"
    assert b11.limit_goal("m", "bf16", b11.Errors(1e-6, 1e-2, 0.99, 0.999)).row()[-1] == "MISS"  # p1 below 0.995


# --- B2: the ProtHash 1.0 student row ------------------------------------------------------------
def test_b2_v1_student_embeds_stage4_through_its_adapter() -> None:
    from benchmarks import b2_student as b2
    from protkit.sequences.tokenize import encode_one, pad_batch

    model = b2.v1_model(quick=True, device=torch.device("cpu"))
    again = b2.v1_model(quick=True, device=torch.device("cpu")).state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())  # seeded
    batch = pad_batch([encode_one("MKTAYIAKQR", 64), encode_one("MKV", 64)])
    with torch.inference_mode():
        hidden = b2.v1_forward(model)(batch.input_ids, batch.attention_mask)  # (B, L, teacher_dim)
        expected = model.embed_teacher(batch.input_ids, batch.attention_mask, "mean", stage=4)  # (B, teacher_dim)
    assert hidden.shape[-1] == model.config.teacher_dim
    real = batch.attention_mask.clone()
    real[:, 0] = 0  # CLS
    real[torch.arange(2), batch.attention_mask.sum(1) - 1] = 0  # EOS
    mean = (hidden * real[..., None]).sum(1) / real.sum(1, keepdim=True)
    torch.testing.assert_close(mean, expected)
    idle = sum(p.numel() for a in list(model.adapters)[:3] for p in a.parameters())
    assert b2.v1_used_params(model) == common.nonembedding_params(model) - idle > 0


def test_cpu_paths_records_this_class_and_auto_follows_it(shared_data: Path, tmp_path: Path, capsys) -> None:
    """``python -m benchmarks.cpu_paths`` writes B7's rows under this CPU's class; the choice reads them."""
    from benchmarks import cpu_paths
    from protkit.embed.cpu_paths import PATHS_FILE, choose_cpu_path, measured_classes
    from protkit.models.cpu import this_cpu

    table = tmp_path / "paths.json"
    assert cpu_paths.main(["--quick", "--data", str(shared_data), "--table", str(table)]) == 0
    classes, shipped = measured_classes(table), measured_classes(PATHS_FILE)
    entry = classes[this_cpu().capability_class]
    assert set(entry["residues_per_s"]) == {"torch fp32", "torch bf16", "torch int8", "onnxruntime fp32",
                                            "onnxruntime int8"}
    assert entry["min_cosine"]["onnxruntime fp32"] >= 0.99999 and "B7 --quick" in entry["source"]
    assert {k: v for k, v in classes.items() if k != this_cpu().capability_class} == \
        {k: v for k, v in shipped.items() if k != this_cpu().capability_class}
    chosen = choose_cpu_path(this_cpu(), int8=False, classes=classes)
    assert f"auto now runs students on {chosen.backend} {chosen.precision}" in capsys.readouterr().out
