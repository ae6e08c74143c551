"""protkit.evaluate / protkit.evaluate.report / protkit.evaluate.agreement: metrics, baselines, neighbour recall and
LSH agreement, probes inside the evaluation, throughput, report files, summary across variants,
and the file-level stage on a real teacher cache."""

from __future__ import annotations

import importlib.resources
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from protkit.embed.embedder import pooled_embeddings, teacher_forward
from protkit.evaluate.agreement import lsh_agreement, neighbour_recall, stored_recall
from protkit.evaluate.baselines import composition_features, fit_ridge, untrained_student
from protkit.evaluate.metrics import by_length, cosine_rows, describe, paired_difference
from protkit.evaluate.probes import probe_specs
from protkit.evaluate.report import write_report
from protkit.evaluate.results import LENGTH_BINS
from protkit.evaluate.run import Split, evaluate, evaluate_variant
from protkit.evaluate.summary import summarize
from protkit.models.esmc.model import ESMCConfig
from protkit.models.esmc.weights import random_esmc, save_weights
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.int8 import quantize_model
from protkit.models.prothash.model import ProtHash
from protkit.quantize import quantize_pretrained
from protkit.sequences.fasta import read_fasta
from protkit.sequences.tokenize import encode_batch, encode_one

TINY = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64, context_length=512)
TEACHER = ESMCConfig(d_model=64, n_heads=1, n_layers=2)
MAX_LENGTH = 200
PNG = b"\x89PNG\r\n\x1a\n"


# --- pure functions ----------------------------------------------------------------------------
def test_cosine_describe_and_length_bins():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    want = [np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine_rows(a, b), want, rtol=1e-12)
    np.testing.assert_allclose(cosine_rows(a, 3 * a), 1.0)
    values = rng.random(101)
    d = describe(values)
    assert (d["n"], d["min"], d["median"]) == (101, values.min(), np.sort(values)[50])
    assert d["p5"] == pytest.approx(np.sort(values)[5])
    lengths = np.array([5, 99, 100, 299, 300, 650, 1000, 5000])
    bins = by_length(np.arange(8.0), lengths)
    assert [bins[label]["n"] for *_, label in LENGTH_BINS] == [2, 2, 1, 1, 2]
    assert bins[">=1000"]["mean"] == 6.5 and describe(np.array([]))["mean"] is None


def test_composition_features():
    f = composition_features(["AAC", "xBZuO*", "W"])
    assert f.shape == (3, 26)
    alphabet = "ACDEFGHIKLMNPQRSTVWY" + "XBZUO"
    assert f[0, alphabet.index("A")] == pytest.approx(2 / 3) and f[0, alphabet.index("C")] == pytest.approx(1 / 3)
    assert f[0, -1] == pytest.approx(math.log(3))
    assert all(f[1, alphabet.index(c)] == pytest.approx(1 / 6) for c in "XBZUO")  # '*' counts toward length only
    assert f[2, :-1].sum() == 1.0


def test_ridge_recovers_a_linear_map_and_shrinks_with_alpha():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5)) * [1, 10, 0.1, 3, 2]
    w, c = rng.normal(size=(5, 7)), rng.normal(size=7)
    y = x @ w + c
    exact = fit_ridge(x, y, alpha=1e-9)
    np.testing.assert_allclose(exact.predict(x), y, atol=1e-6)
    strong = fit_ridge(x, y, alpha=1e6)
    np.testing.assert_allclose(strong.predict(x), np.broadcast_to(y.mean(0), y.shape), atol=0.05 * np.abs(y).max())


def test_neighbour_recall():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(60, 16))
    assert neighbour_recall(ref, 5 * ref, k=10) == 1.0
    assert neighbour_recall(ref, ref @ np.linalg.qr(rng.normal(size=(16, 16)))[0], k=10) == 1.0  # a rotation
    assert neighbour_recall(ref, rng.normal(size=(60, 16)), k=10) < 0.4  # unrelated: about 10/59 by chance
    # two tight clusters: any space keeping the clusters apart finds 4 of 4 neighbours in-cluster
    clusters = np.repeat(np.eye(2, 16), 5, axis=0) + 0.01 * rng.normal(size=(10, 16))
    shuffled = np.repeat(np.eye(2, 16)[:, ::-1], 5, axis=0) + 0.01 * rng.normal(size=(10, 16))
    assert neighbour_recall(clusters, shuffled, k=4) == 1.0
    assert neighbour_recall(ref[:1], ref[:1]) is None


def test_lsh_agreement_grows_with_bits():
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(300, 32))
    student = teacher @ rng.normal(size=(32, 48)) + 0.3 * rng.normal(size=(300, 48))  # a noisy linear map
    rows = lsh_agreement(teacher, student, k=10, bits=(64, 256, 1024))
    assert [(r["bits"], r["bytes"]) for r in rows] == [(64, 8), (256, 32), (1024, 128)]
    own = [r["student_recall_hamming"] for r in rows]
    assert own[0] < own[1] < own[2] and own[2] > 0.6
    assert all(r["student_recall_reranked"] >= r["student_recall_hamming"] for r in rows)
    assert rows[-1]["student_recall_reranked"] > 0.95
    assert rows[0]["teacher_recall"] < rows[-1]["teacher_recall"] <= neighbour_recall(teacher, student) + 0.05
    # codes of the teacher's own vectors find the teacher's neighbours as they find their own
    same = lsh_agreement(teacher, teacher, k=10, bits=(128,))[0]
    assert same["teacher_recall"] == same["student_recall_hamming"]
    assert lsh_agreement(teacher[:1], teacher[:1]) == []
    stored = stored_recall(teacher, {"fp32": student}, k=10)
    assert [(r["dtype"], r["bytes"]) for r in stored] == [("fp32", 48 * 4), ("fp16", 48 * 2)]
    assert stored[0]["teacher_recall"] == neighbour_recall(teacher, student)
    assert abs(stored[1]["teacher_recall"] - stored[0]["teacher_recall"]) < 0.02


def test_untrained_student_is_the_distillation_initial_model():
    torch.manual_seed(7)
    want = ProtHash(TINY)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    got = untrained_student(TINY, 7)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(got.state_dict()[k], v) for k, v in want.state_dict().items())


# --- the evaluation on tiny models -------------------------------------------------------------
@pytest.fixture(scope="module")
def proteome() -> list[tuple[str, str]]:
    """120 real bacterial proteins (shipped with pyhmmer), stop codons removed."""
    path = importlib.resources.files("pyhmmer") / "tests/data/seqs/938293.PRJEB85.HG003687.faa"
    records = [(r.id, r.sequence.rstrip("*")) for r in read_fasta(str(path))]
    return [r for r in records if "*" not in r[1]][:120]


@pytest.fixture(scope="module")
def teacher():
    return random_esmc(TEACHER, seed=0)


@pytest.fixture(scope="module")
def splits(proteome, teacher) -> tuple[Split, Split]:
    tokens = [encode_one(s, MAX_LENGTH) for _, s in proteome]
    vectors = pooled_embeddings(teacher_forward(teacher), tokens, ["cls", "mean"], TEACHER.d_model, 8192,
                                torch.device("cpu"))
    test, train = slice(0, 40), slice(40, None)
    make = lambda part: Split([i for i, _ in proteome[part]], [s for _, s in proteome[part]],
                              {p: v[part] for p, v in vectors.items()})
    return make(test), make(train)


@pytest.fixture(scope="module")
def probe_config(proteome, tmp_path_factory) -> dict:
    """A labelled table of the proteome (label: more or less than 10% hydrophobic I/L/V/F) and an
    optional probe whose file is absent."""
    path = tmp_path_factory.mktemp("probes") / "hydrophobic.tsv"
    share = [sum(s.count(a) for a in "ILVF") / len(s) for _, s in proteome]
    cut = float(np.median(share))
    pd.DataFrame({"id": [i for i, _ in proteome], "sequence": [s for _, s in proteome],
                  "label": ["high" if x > cut else "low" for x in share]}).to_csv(path, sep="\t", index=False)
    return {"hydrophobic": {"path": str(path), "test_fraction": 0.3},
            "absent": {"path": str(path.parent / "absent.fasta"), "label_regex": "(x)", "optional": True}}


@pytest.fixture(scope="module")
def evaluation(splits, teacher, probe_config):
    test, train = splits
    torch.manual_seed(1)
    student = ProtHash(TINY).eval()
    return evaluate(test, train, student, quantize_model(student), untrained_student(TINY, 0), teacher,
                    poolings=("cls", "mean"), max_tokens=4096, max_length=MAX_LENGTH, throughput_sequences=16, k=5,
                    probes=probe_specs(probe_config))


def test_evaluate_metrics(evaluation, splits):
    test, train = splits
    m = evaluation.metrics
    assert (m["n_test"], m["n_train"], m["poolings"]) == (40, 80, ["cls", "mean"])
    assert set(m["models"]) == {"fp32", "int8", "untrained", "composition"}
    # fp32 cosines equal those of sequences embedded one at a time, independently of evaluate()
    torch.manual_seed(1)
    student = ProtHash(TINY).eval()
    for i in (0, 17, 39):
        batch = encode_batch([test.sequences[i]], MAX_LENGTH)
        with torch.no_grad():
            vec = student.embed_teacher(batch.input_ids, batch.attention_mask, "mean")[0].numpy()
        assert evaluation.cosines["fp32"]["mean"][i] == pytest.approx(
            cosine_rows(vec[None], test.teacher["mean"][i][None])[0], abs=1e-5)
    for model in m["models"]:
        for p in ("cls", "mean"):
            stats = m["models"][model][p]
            assert stats["cosine"]["mean"] == pytest.approx(float(np.mean(evaluation.cosines[model][p])))
            assert sum(b["n"] for b in stats["by_length"].values()) == 40
            assert 0.0 <= stats["recall@5"] <= 1.0
    assert m["int8_vs_fp32"]["mean"]["min"] > 0.99
    for precision in ("fp32", "int8"):
        for p in ("cls", "mean"):
            gains = m["vs_baselines"][precision][p]
            assert set(gains) == {"untrained", "composition"}
            for b, gain in gains.items():
                diff = evaluation.cosines[precision][p] - evaluation.cosines[b][p]
                assert gain["mean"] == pytest.approx(float(diff.mean()))
                assert gain["win_fraction"] == pytest.approx(float((diff > 0).mean()))
                assert gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
            assert m["beats_baselines"][precision][p] == all(g["ci95"][0] > 0 for g in gains.values())
    lsh = m["lsh"]
    assert (lsh["k"], lsh["bits"], lsh["candidate_factor"]) == (5, [64, 128, 256, 512, 1024], 10)
    for p in ("cls", "mean"):
        rows = lsh["poolings"][p]
        assert [r["bits"] for r in rows] == lsh["bits"] and [r["bytes"] for r in rows] == [8, 16, 32, 64, 128]
        assert all(0 <= r[key] <= 1 for r in rows for key in ("teacher_recall", "student_recall_hamming",
                                                               "student_recall_reranked"))
        assert rows[-1]["student_recall_hamming"] >= rows[0]["student_recall_hamming"]  # more bits, nearer the floats
        assert rows[-1]["student_recall_reranked"] >= rows[-1]["student_recall_hamming"]
        stored = {(r["model"], r["dtype"]): r for r in m["stored_recall"][p]}
        assert stored["fp32", "fp32"]["teacher_recall"] == m["models"]["fp32"][p]["recall@5"]
        assert stored["int8", "fp16"]["bytes"] == TINY.teacher_dim * 2
    probe = m["probes"]["hydrophobic"]
    assert probe["status"] == "ok" and probe["n_train"] + probe["n_test"] == 120 and probe["truncated"] > 0
    assert set(probe["models"]) == {"teacher", "fp32", "int8", "random"}
    assert m["probes"]["absent"]["status"] == "skipped"
    runs = m["throughput"]
    assert set(runs) == {"teacher", "fp32", "int8"}
    assert len({(r["sequences"], r["residues"]) for r in runs.values()}) == 1  # same sequences for all
    assert runs["fp32"]["residues"] == sum(min(len(s), MAX_LENGTH - 2) for s in test.sequences[:16])
    assert all(r["residues_per_s"] > 0 for r in runs.values())


def test_paired_difference_interval():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0.5, 0.9, size=400)
    ahead = paired_difference(baseline + 0.01 + rng.normal(0, 0.02, 400), baseline)
    assert 0.005 < ahead["ci95"][0] < ahead["mean"] < ahead["ci95"][1] < 0.015
    assert 0.6 < ahead["win_fraction"] < 0.8
    tied = paired_difference(baseline + rng.normal(0, 0.02, 400), baseline)
    assert tied["ci95"][0] < 0 < tied["ci95"][1]  # a difference within noise is no win
    assert paired_difference(baseline, baseline + 0.001)["ci95"][1] == pytest.approx(-0.001)


def test_composition_baseline_is_the_ridge_fit(evaluation, splits):
    test, train = splits
    ridge = fit_ridge(composition_features(train.sequences), train.teacher["cls"], alpha=1.0)
    want = cosine_rows(ridge.predict(composition_features(test.sequences)), test.teacher["cls"])
    np.testing.assert_allclose(evaluation.cosines["composition"]["cls"], want, rtol=1e-9)


def test_report_files(evaluation, tmp_path):
    write_report(evaluation, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cosine_histogram.png", "cosine_vs_length.png", "metrics.json", "probes.tsv", "recall_vs_bits.png",
        "report.md", "throughput.png"]
    for name in ("cosine_histogram.png", "cosine_vs_length.png", "throughput.png", "recall_vs_bits.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(evaluation.metrics))
    text = (tmp_path / "report.md").read_text()
    for p in ("cls", "mean"):
        beats = evaluation.metrics["beats_baselines"]["fp32"][p]
        assert f"**The fp32 student {'beats' if beats else 'does NOT beat'} both baselines**" in text
        int8 = evaluation.metrics["beats_baselines"]["int8"][p]
        assert f"**The int8 student {'beats' if int8 else 'does NOT beat'} both baselines** by the same test." in text
    # throughput: each model with the backend it ran on and its speed-up over the teacher
    runs = evaluation.metrics["throughput"]
    speedup = runs["int8"]["residues_per_s"] / runs["teacher"]["residues_per_s"]
    assert f"| student int8 | torchao int8 | {runs['int8']['residues_per_s']:.0f} | {speedup:.1f}× |" in text
    assert "| teacher | torch fp32 |" in text and "| student fp32 | torch fp32 |" in text
    fp32_mean = evaluation.metrics["models"]["fp32"]["cls"]["cosine"]["mean"]
    assert f"| fp32 | {fp32_mean:.4f} |" in text
    assert "](throughput.png)" in text and "](recall_vs_bits.png)" in text
    # the LSH table, and the probe table with the teacher and the random control
    lsh = evaluation.metrics["lsh"]["poolings"]["mean"][2]
    assert f"| 256 | {lsh['method']} | 32 | {lsh['teacher_recall']:.3f} | {lsh['student_recall_hamming']:.3f} |" in text
    probe = evaluation.metrics["probes"]["hydrophobic"]["models"]
    assert "### hydrophobic" in text
    assert "| model | MCC | macro F1 | accuracy | 1-NN accuracy | normalised MCC |" in text
    assert f"| teacher | {probe['teacher']['mcc']:.3f}" in text
    assert f"| random control | {probe['random']['mcc']:.3f}" in text
    assert f"| {probe['fp32']['normalised_mcc']:.3f} |" in text
    assert "### absent\n\n*Skipped: " in text and "optional probe skipped" in text
    # probes.tsv (the HTML report's probe table): teacher, students and random control, and the skipped probe
    table = pd.read_csv(tmp_path / "probes.tsv", sep="\t")
    rows = table[table["probe"] == "hydrophobic"].set_index("model")
    assert list(rows.index) == ["teacher", "fp32", "int8", "random"]
    assert rows.loc["random", "mcc"] == pytest.approx(probe["random"]["mcc"], abs=1e-4)
    assert rows.loc["fp32", "normalised_mcc"] == pytest.approx(probe["fp32"]["normalised_mcc"], abs=1e-4)
    assert table[table["probe"] == "absent"]["status"].str.startswith("skipped").all()


def test_summarize(evaluation, tmp_path):
    paths = []
    for variant in ("small", "large"):
        sizes = {"fp32_bytes": 100, "int8_bytes": 30, "int8_ratio": 0.3}
        metrics = {**evaluation.metrics, "variant": variant, "sizes": sizes}
        paths.append(tmp_path / f"{variant}.json")
        paths[-1].write_text(json.dumps(metrics))
    table = summarize(paths, tmp_path / "summary.tsv", tmp_path / "summary.png")
    read = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert len(read) == 2 * 2 * 2 and list(read.columns) == list(table.columns)
    row = read[(read.variant == "large") & (read.precision == "int8") & (read.pooling == "mean")].iloc[0]
    assert row.cosine_mean == pytest.approx(evaluation.metrics["models"]["int8"]["mean"]["cosine"]["mean"], rel=1e-5)
    assert row.size_bytes == 30
    assert (row.backend, row.teacher_backend, row.device) == ("torchao int8", "torch fp32", "cpu")
    assert read[read.precision == "fp32"]["backend"].eq("torch fp32").all()
    gain = evaluation.metrics["vs_baselines"]["int8"]["mean"]["untrained"]
    assert (row.gain_vs_untrained_ci_low, row.gain_vs_untrained_ci_high) == pytest.approx(gain["ci95"], rel=1e-5)
    assert list(read.columns)[-1] == "probe_hydrophobic"  # an absent (skipped) probe has no column
    want = evaluation.metrics["probes"]["hydrophobic"]["models"]["int8"]["normalised_mcc"]
    assert row.probe_hydrophobic == pytest.approx(want, rel=1e-5)
    assert (tmp_path / "summary.png").read_bytes()[:8] == PNG


# --- file-level stage --------------------------------------------------------------------------
def test_evaluate_variant_files(proteome, teacher, tmp_path):
    from protkit.data.table import SCHEMA
    from protkit.teacher.build import build_cache

    table = pd.DataFrame({
        "id": [i for i, _ in proteome[:60]],
        "sequence": [s for _, s in proteome[:60]],
        "length": [len(s) for _, s in proteome[:60]],
        "split": ["test"] * 20 + ["train"] * 40,
        "aliases": [""] * 60,
    })
    pq.write_table(pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False), tmp_path / "sequences.parquet")
    save_weights(teacher, tmp_path / "teacher.safetensors")
    build_cache(teacher, table, tmp_path / "cache", weights_sha256="t", teacher_name="tiny", dataset="demo",
                max_length=MAX_LENGTH, max_tokens_per_batch=4096, poolings=("cls", "mean"), store_dtype="fp16")
    torch.manual_seed(0)
    ProtHash(TINY).save_pretrained(tmp_path / "model")
    quantize_pretrained(tmp_path / "model", tmp_path / "model" / "int8")

    result = evaluate_variant(
        tmp_path / "sequences.parquet", tmp_path / "cache", tmp_path / "model", tmp_path / "model" / "int8",
        str(tmp_path / "teacher.safetensors"), poolings=["mean"], max_tokens=4096,
        device="cpu", untrained_seed=0, variant="tiny", max_sequences=15, throughput_sequences=8,
    )
    write_report(result, tmp_path / "eval")
    metrics = result.metrics
    assert (metrics["variant"], metrics["n_test"], metrics["n_train"]) == ("tiny", 15, 40)
    assert metrics["max_length"] == MAX_LENGTH
    assert metrics["sizes"]["int8_bytes"] == (tmp_path / "model" / "int8" / "model.pt").stat().st_size
    # the untrained baseline is the seed-0 initial model, i.e. the evaluated model itself here
    assert metrics["models"]["untrained"]["mean"]["cosine"] == metrics["models"]["fp32"]["mean"]["cosine"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["variant"] == "tiny"
    assert (tmp_path / "eval" / "report.md").exists() and (tmp_path / "eval" / "throughput.png").exists()
    with pytest.raises(ValueError, match="evaluate.poolings: tokens not in the teacher cache"):
        evaluate_variant(tmp_path / "sequences.parquet", tmp_path / "cache", tmp_path / "model",
                         tmp_path / "model" / "int8", str(tmp_path / "teacher.safetensors"),
                         poolings=["tokens"], device="cpu")


def test_throughput_backends_and_length_axis():
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from protkit.evaluate.plots import length_axis, throughput_backend

    metrics = {"teacher_dtype": "bf16",
               "throughput": {"teacher": {}, "fp32": {}, "int8": {"backend": "onnxruntime int8"}}}
    assert [throughput_backend(metrics, m) for m in ("teacher", "fp32", "int8")] == [
        "torch bf16", "torch fp32", "onnxruntime int8"]  # a backend the evaluation recorded wins
    ax = Figure().add_subplot()
    length_axis(ax, np.array([35, 120, 510]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "100", "200", "500"]  # plain, no 10^x labels
    assert isinstance(ax.xaxis.get_minor_formatter(), NullFormatter)  # minor ticks unlabelled: nothing overlaps
