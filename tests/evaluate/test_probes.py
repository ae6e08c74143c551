"""protkit.evaluate.probes: reading labelled sets (FASTA + label regex, tables), splits and sampling, errors
that name the file, line and key, the classifier scores, the normalised score, and a real probe on
DeepLoc proteins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from protkit.embed.embedder import teacher_forward
from protkit.evaluate.probes import (
    RANDOM, ProbeError, ProbeSet, ProbeSpec, normalised_score, probe_specs, read_probe, run_probes, score_probe,
    score_vectors,
)
from protkit.models.esmc.model import ESMCConfig
from protkit.models.esmc.weights import random_esmc

HEADER_LABEL = r"^\S+\s+\S+-([MS])\b"


def write_fasta(path, records: list[tuple[str, str]]) -> str:
    path.write_text("".join(f">{header}\n{seq}\n" for header, seq in records))
    return str(path)


def spec(path, **settings) -> ProbeSpec:
    return ProbeSpec.from_config("toy", {"path": str(path), **settings})


# --- reading -------------------------------------------------------------------------------------
def test_fasta_labels_skips_and_split(tmp_path):
    records = [(f"P{i:03d} Loc-{'MSU'[i % 3]} test", "MKVLA" * 4) for i in range(60)]
    records[3] = ("P003 Loc-M test", "MKJLA")  # J: not an amino acid
    path = write_fasta(tmp_path / "toy.fasta", records)
    probe = read_probe(spec(path, label_regex=HEADER_LABEL, test_fraction=0.5))
    assert probe.n_records == 60
    assert probe.skipped == {"no_label": 20, "alphabet": 1}  # the U records do not match
    assert len(probe.ids) == 39 and set(probe.labels) == {"M", "S"}
    assert "P003" not in probe.ids and 0 < probe.test.sum() < 39
    again = read_probe(spec(path, label_regex=HEADER_LABEL, test_fraction=0.5))
    assert np.array_equal(again.test, probe.test)  # a stable hash split

    # max_sequences keeps the lowest seeded id hashes: a subset chosen the same way in any probe
    small = read_probe(spec(path, label_regex=HEADER_LABEL, test_fraction=0.5, max_sequences=20))
    every = read_probe(spec(path, label_regex=r"^\S+\s+\S+-([MSU])\b", test_fraction=0.5, max_sequences=30))
    assert len(small.ids) == 20 and small.skipped["over_max_sequences"] == 19
    both = {i for i in every.ids if i in set(probe.ids)}  # the M/S records among every's lowest hashes
    assert both <= set(small.ids) or set(small.ids) <= both
    kept = {i: t for i, t in zip(probe.ids, probe.test)}
    assert all(kept[i] == t for i, t in zip(small.ids, small.test))  # the split does not depend on sampling


def test_split_regex_and_table(tmp_path):
    records = [(f"Q{i} Loc-{'MS'[i % 2]} {'test' if i < 4 else 'train'}", "MKVLA") for i in range(12)]
    path = write_fasta(tmp_path / "split.fasta", records)
    probe = read_probe(spec(path, label_regex=HEADER_LABEL, split_regex=r"\s(train|test)$"))
    assert list(probe.test) == [True] * 4 + [False] * 8

    table = pd.DataFrame({"id": [f"T{i}" for i in range(10)], "sequence": ["MKVLAG"] * 10,
                          "label": ["a", "b"] * 4 + ["", "a"], "split": ["test"] * 3 + ["train"] * 7})
    table.to_csv(tmp_path / "set.tsv", sep="\t", index=False)
    table.to_parquet(tmp_path / "set.parquet")
    for name in ("set.tsv", "set.parquet"):
        probe = read_probe(spec(tmp_path / name))
        assert probe.skipped == {"no_label": 1} and probe.test.sum() == 3 and len(probe.ids) == 9


def test_errors_name_file_line_and_key(tmp_path):
    path = write_fasta(tmp_path / "bad.fasta", [("A1 Loc-M test", "MKV"), ("A2 Loc- test", "MKV")])
    with pytest.raises(ProbeError, match=r"bad\.fasta line 3, id A2: probes\.toy\.label_regex captured an empty label"):
        read_probe(spec(path, label_regex=r"Loc-(\S*)"))
    with pytest.raises(ProbeError, match=r"bad\.fasta: probes\.toy\.label_regex '\^X\(\.\)' matches no header "
                                         r"\(first header, line 1: 'A1 Loc-M test'\)"):
        read_probe(spec(path, label_regex=r"^X(.)"))
    with pytest.raises(ProbeError, match=r"bad\.fasta line 1, id A1: probes\.toy\.split_regex gave 'Loc'; expected"):
        read_probe(spec(path, label_regex=r"Loc-(\S)", split_regex=r"(Loc)"))
    with pytest.raises(ProbeError, match=r"probes\.toy\.label_regex: '\(a\)\(b\)' needs exactly one capture group"):
        spec(path, label_regex="(a)(b)")
    with pytest.raises(ProbeError, match=r"probes\.toy\.label_regex: '\(' is not a regular expression"):
        spec(path, label_regex="(")
    with pytest.raises(ProbeError, match=r"probes\.toy\.label_regex: required for the FASTA file .*bad\.fasta"):
        spec(path)
    pd.DataFrame({"id": ["x"], "seq": ["MKV"]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    with pytest.raises(ProbeError, match=r"t\.tsv: no column sequence, label \(has id, seq\)"):
        read_probe(spec(tmp_path / "t.tsv"))
    pd.DataFrame({"id": ["x", "y"], "sequence": ["MKV"] * 2, "label": ["a", "b"], "split": ["test", "dev"]}).to_csv(
        tmp_path / "s.tsv", sep="\t", index=False)
    with pytest.raises(ProbeError, match=r"s\.tsv line 3, id y: column split gave 'dev'"):
        read_probe(spec(tmp_path / "s.tsv"))
    one_class = write_fasta(tmp_path / "one.fasta", [(f"B{i} Loc-M", "MKV") for i in range(20)])
    with pytest.raises(ProbeError, match=r"one\.fasta: the train split has only the label 'M'"):
        read_probe(spec(one_class, label_regex=HEADER_LABEL, test_fraction=0.3))


# --- scoring -------------------------------------------------------------------------------------
def test_normalised_score():
    assert normalised_score(0.6, 0.9, 0.1) == pytest.approx(0.625)
    assert normalised_score(0.9, 0.9, 0.1) == 1.0 and normalised_score(0.1, 0.9, 0.1) == 0.0
    assert normalised_score(0.5, 0.1, 0.1) is None and normalised_score(0.5, 0.0, 0.1) is None


def synthetic_probe(n: int = 300, classes: int = 3, seed: int = 0) -> tuple[ProbeSet, np.ndarray]:
    """Labels with well separated class means in 32 dimensions: a linearly separable set."""
    rng = np.random.default_rng(seed)
    labels = np.array([f"c{i % classes}" for i in range(n)], dtype=object)
    centres = 6.0 * rng.standard_normal((classes, 32))
    vectors = centres[[int(label[1:]) for label in labels]] + rng.standard_normal((n, 32))
    test = rng.random(n) < 0.3
    probe = ProbeSet("synthetic", [f"s{i}" for i in range(n)], ["MKV"] * n, labels, test, n, {})
    return probe, vectors.astype(np.float32)


def test_separable_vectors_score_near_one_and_random_near_zero():
    probe, vectors = synthetic_probe()
    train, test = ~probe.test, probe.test
    scores = score_vectors(vectors[train], probe.labels[train], vectors[test], probe.labels[test])
    assert scores["mcc"] > 0.97 and scores["accuracy"] > 0.97 and scores["knn1_accuracy"] > 0.97
    assert scores["macro_f1"] > 0.97 and scores["converged"]
    noisy = vectors + 25.0 * np.random.default_rng(1).standard_normal(vectors.shape).astype(np.float32)
    result = score_probe(probe, {"teacher": vectors, "fp32": noisy}, seed=3)
    assert set(result) == {"teacher", "fp32", RANDOM}
    assert abs(result[RANDOM]["mcc"]) < 0.2  # seeded Gaussian vectors carry no label
    assert result["teacher"]["mcc"] > result["fp32"]["mcc"] > result[RANDOM]["mcc"]
    want = (result["fp32"]["mcc"] - result[RANDOM]["mcc"]) / (result["teacher"]["mcc"] - result[RANDOM]["mcc"])
    assert result["fp32"]["normalised_mcc"] == pytest.approx(want)
    assert "normalised_mcc" not in result["teacher"] and "normalised_mcc" not in result[RANDOM]


def test_optional_probe_absent_is_skipped(tmp_path):
    specs = probe_specs({"gone": {"path": str(tmp_path / "absent.fasta"), "label_regex": "(x)", "optional": True}})
    result = run_probes(specs, {}, 8, 64, 1024, torch.device("cpu"))
    assert result == {"gone": {"status": "skipped", "path": str(tmp_path / "absent.fasta"),
                               "note": f"{tmp_path / 'absent.fasta'} not found; optional probe skipped"}}
    required = probe_specs({"gone": {"path": str(tmp_path / "absent.fasta"), "label_regex": "(x)"}})
    with pytest.raises(ProbeError, match=r"probes\.gone\.path: .*absent\.fasta not found \(optional: true skips"):
        run_probes(required, {}, 8, 64, 1024, torch.device("cpu"))


# --- DeepLoc, with the demo's probe settings ------------------------------------------------------
@pytest.fixture(scope="module")
def demo_probes(repo_root) -> dict:
    return yaml.safe_load((repo_root / "config" / "demo.yaml").read_text())["probes"]


def test_demo_probes_read_deeploc(shared_data, demo_probes, monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)  # the config's paths are relative to the repository root
    localisation, membrane = (read_probe(s) for s in probe_specs(
        {name: {**entry, "max_sequences": None} for name, entry in demo_probes.items()}))
    assert localisation.n_records == 2768 and len(localisation.ids) == 2768
    assert len(set(localisation.labels)) == 10 and "Cell.membrane" in set(localisation.labels)
    assert set(membrane.labels) == {"M", "S"} and membrane.skipped == {"no_label": 1022}  # U: unknown


def test_deeploc_membrane_probe_beats_the_random_control(shared_data, demo_probes, monkeypatch, repo_root):
    """A (random-weight) ESMC teacher's mean-pooled vectors carry composition, which tells membrane
    from soluble proteins; random vectors do not."""
    monkeypatch.chdir(repo_root)
    specs = probe_specs({"membrane": {**demo_probes["deeploc_membrane"], "max_sequences": 800}})
    teacher = random_esmc(ESMCConfig(d_model=64, n_heads=1, n_layers=2), seed=0)
    result = run_probes(specs, {"teacher": teacher_forward(teacher)}, 64, 302, 8192, torch.device("cpu"))["membrane"]
    assert result["status"] == "ok" and result["n_train"] + result["n_test"] == 800
    assert result["truncated"] > 0 and set(result["classes"]) == {"M", "S"}
    teacher_score, random_score = result["models"]["teacher"], result["models"][RANDOM]
    # measured: teacher MCC 0.37, random -0.04 (other sampling seeds: 0.32-0.38 against -0.06-0.05)
    assert teacher_score["mcc"] > 0.25 and teacher_score["mcc"] > random_score["mcc"] + 0.2, result["models"]
    assert teacher_score["knn1_accuracy"] > random_score["knn1_accuracy"] + 0.1
