"""``protkit finetune`` end to end: a tiny random student learns DeepLoc's membrane vs soluble
labels, the output loads with transformers (trust_remote_code) and gives protkit predict's numbers;
LoRA and full fine-tuning, per-residue, regression and multi-label tasks run; what cannot be
fine-tuned is refused."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from finetune_fixtures import FAST, LABEL_REGEX, membrane_like, per_residue_labels
from safetensors.torch import load_file

from protkit.cli.main import main
from protkit.models.names import WEIGHTS_FILE
from protkit.sequences.fasta import read_fasta, write_fasta

DEEPLOC_TRAIN, DEEPLOC_TEST, DEEPLOC_RESIDUES = 400, 150, 200


@pytest.fixture(scope="module")
def deeploc(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DeepLoc membrane (M) and soluble (S) proteins, cut to their first 200 residues: 400 to train
    on, 150 others to test (picked by a hash of the accession, so both classes are in both)."""
    pattern = re.compile(LABEL_REGEX)
    records = [r for r in read_fasta(shared_data / "deeploc_test.fasta") if pattern.search(r.description)]
    records.sort(key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())
    root = tmp_path_factory.mktemp("deeploc")
    files = {}
    for name, chosen in (("train", records[:DEEPLOC_TRAIN]), ("test", records[DEEPLOC_TRAIN:][:DEEPLOC_TEST])):
        files[name] = root / f"{name}.fasta"
        write_fasta([(r.description, r.sequence[:DEEPLOC_RESIDUES]) for r in chosen], files[name])
    return files


@pytest.fixture(scope="module")
def deeploc_model(model_dir: Path, deeploc: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deeploc-run") / "membrane"
    assert main(["-q", "finetune", "--model", str(model_dir), "--train", str(deeploc["train"]), "--test",
                 str(deeploc["test"]), "--label-regex", LABEL_REGEX, "--output", str(out), *FAST]) == 0
    return out


def test_membrane_vs_soluble_is_learnt(deeploc_model: Path) -> None:
    metrics = json.loads((deeploc_model / "metrics.json").read_text())
    print(f"\nDeepLoc M/S, tiny random student, LoRA: {metrics['summary']}")
    assert metrics["finetuned"]["test"]["mcc"] > 0.2
    assert set(metrics["finetuned"]["test"]) == {"mcc", "macro_f1", "accuracy", "n"}
    assert metrics["frozen_probe"]["test"]["mcc"] > 0 and "mcc" in metrics["composition"]["valid"]
    assert metrics["n"]["train"] + metrics["n"]["valid"] == DEEPLOC_TRAIN and metrics["n"]["test"] == DEEPLOC_TEST
    assert metrics["labels"] == ["M", "S"] and metrics["task"] == "classification"
    curve = metrics["learning_curve"]
    assert curve and {"epoch", "train_loss", "valid_mcc", "valid_loss"} <= set(curve[0])
    assert 1 <= metrics["best_epoch"] <= len(curve) and metrics["settings"]["lora_rank"] == 8
    files = {p.name for p in deeploc_model.iterdir()}
    expected = {"config.json", WEIGHTS_FILE, "modeling_prothash.py", "tokenizer.json", "metrics.json", "tensorboard"}
    assert expected <= files
    assert list((deeploc_model / "tensorboard").glob("events.out.tfevents.*"))
    assert not deeploc_model.with_name("membrane.partial").exists()
    assert not [k for k in load_file(deeploc_model / WEIGHTS_FILE) if "lora" in k]  # merged


def test_output_loads_with_transformers_and_matches_predict(deeploc_model: Path, deeploc: dict[str, Path],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.dynamic_module_utils as dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))  # never the user's cache
    monkeypatch.delitem(sys.modules, "transformers_modules", raising=False)
    model = AutoModelForSequenceClassification.from_pretrained(deeploc_model, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(deeploc_model)
    records = list(read_fasta(deeploc["test"]))[:24]
    with torch.no_grad():
        batch = tokenizer([r.sequence for r in records], padding=True, return_tensors="pt")
        logits = model(**batch).logits  # (B, 2)
    out = tmp_path / "predicted.parquet"
    assert main(["-q", "predict", "--model", str(deeploc_model), "--input", str(deeploc["test"]), "--output",
                 str(out)]) == 0
    table = pq.read_table(out).to_pandas().iloc[:24]
    assert table["id"].tolist() == [r.id for r in records]
    probabilities = torch.softmax(logits, -1).numpy()  # (B, 2)
    np.testing.assert_allclose(np.stack(table["probabilities"]), probabilities, rtol=1e-5, atol=1e-6)
    assert table["prediction"].tolist() == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]


def test_full_finetuning_trains_every_weight(model_dir: Path, synthetic_fastas: dict[str, Path],
                                             tmp_path: Path) -> None:
    out = tmp_path / "full"
    assert main(["-q", "finetune", "--model", str(model_dir), "--train", str(synthetic_fastas["train"]), "--test",
                 str(synthetic_fastas["test"]), "--label-regex", LABEL_REGEX, "--output", str(out), "--full",
                 "--epochs", "3", "--no-baselines", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["lora_rank"] is None and metrics["settings"]["mode"] == "full"
    assert metrics["finetuned"]["test"]["mcc"] > 0.5, metrics["summary"]
    assert metrics["frozen_probe"] is None  # --no-baselines
    start, tuned = load_file(model_dir / WEIGHTS_FILE), load_file(out / WEIGHTS_FILE)
    name = "blocks.0.attention.q_proj.weight"
    assert not torch.equal(start[name], tuned[f"prothash.encoder.{name}"])


def test_per_residue_task_beats_chance(model_dir: Path, tmp_path: Path) -> None:
    proteins = membrane_like(160, 3)
    path = tmp_path / "residues.parquet"
    pd.DataFrame({"id": [p[0] for p in proteins], "sequence": [p[1] for p in proteins],
                  "hydrophobic": [per_residue_labels(p[1]) for p in proteins]}).to_parquet(path)
    out = tmp_path / "tokens"
    assert main(["-q", "finetune", "--model", str(model_dir), "--train", str(path), "--label-column", "hydrophobic",
                 "--task", "tokens", "--output", str(out), "--epochs", "3", "--valid-fraction", "0.2", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finetuned"]["valid"]["mcc"] > 0.5, metrics["summary"]
    assert metrics["finetuned"]["valid"]["residues"] > 1000 and metrics["labels"] == ["-", "H"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ProtHashForTokenClassification"]
    fasta = tmp_path / "few.fasta"
    write_fasta([(p[0], p[1]) for p in proteins[:5]], fasta)
    assert main(["-q", "predict", "--model", str(out), "--input", str(fasta), "--output",
                 str(tmp_path / "p.parquet")]) == 0
    table = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert [len(row["prediction"]) for row in table] == [len(p[1]) for p in proteins[:5]]
    assert len(table[0]["probabilities"]) == len(proteins[0][1]) and len(table[0]["probabilities"][0]) == 2


@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_regression_and_multilabel_tables(task: str, model_dir: Path, tmp_path: Path) -> None:
    proteins = membrane_like(160, 4)
    share = [sum(c in "AILMFVW" for c in p[1]) / len(p[1]) for p in proteins]
    frame = pd.DataFrame({"id": [p[0] for p in proteins], "sequence": [p[1] for p in proteins]})
    if task == "regression":
        frame["share"] = np.round(np.array(share) * 100, 1)  # percent hydrophobic: many distinct values
        columns = ["--label-column", "share"]
    else:
        frame["membrane"] = [int(p[2] == "M") for p in proteins]
        frame["long"] = [int(len(p[1]) > 80) for p in proteins]
        columns = ["--label-column", "membrane", "--label-column", "long"]
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / task
    assert main(["-q", "finetune", "--model", str(model_dir), "--train", str(path), *columns, "--output", str(out),
                 "--epochs", "3", "--valid-fraction", "0.25", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task
    fasta = tmp_path / "few.fasta"
    write_fasta([(p[0], p[1]) for p in proteins[:40]], fasta)
    assert main(["-q", "predict", "--model", str(out), "--input", str(fasta), "--output",
                 str(tmp_path / "p.parquet")]) == 0
    table = pq.read_table(tmp_path / "p.parquet")
    if task == "regression":
        assert metrics["finetuned"]["valid"]["spearman"] > 0.5, metrics["summary"]
        values = np.array(table.column("value").to_pylist())
        assert table.column("prediction").to_pylist() == values.tolist()
        assert 10 < values.mean() < 70  # in the labels' units (percent), not standardised
    else:
        assert set(metrics["finetuned"]["valid"]["labels"]) == {"membrane", "long"}
        assert metrics["finetuned"]["valid"]["labels"]["membrane"]["f1"] > 0.6, metrics["summary"]
        assert all(set(p) <= {"membrane", "long"} for p in table.column("prediction").to_pylist())
        assert len(table.column("probabilities")[0]) == 2


def test_what_cannot_be_finetuned_is_refused(model_dir: Path, synthetic_fastas: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    base = ["finetune", "--train", str(synthetic_fastas["train"]), "--label-regex", LABEL_REGEX]
    assert main([*base, "--model", str(model_dir / "int8"), "--output", str(tmp_path / "o")]) == 2
    assert "an int8 artifact cannot be fine-tuned" in capsys.readouterr().err
    for taken in (synthetic_fastas["train"], model_dir):
        assert main([*base, "--model", str(model_dir), "--output", str(taken)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("protkit: error:") and err.count("\n") == 1 and "this output is the input" in err
    assert main([*base[:3], "--label-regex", "(M)(S)", "--model", str(model_dir), "--output", str(tmp_path / "o")]) == 2
    assert "needs exactly one capture group" in capsys.readouterr().err


def test_the_teacher_finetunes_per_residue(tmp_path: Path) -> None:
    from protkit.models.esmc import ESMCConfig, random_esmc, save_weights

    teacher = tmp_path / "teacher.safetensors"
    save_weights(random_esmc(ESMCConfig(d_model=64, n_heads=2, n_layers=1), seed=0), teacher)
    proteins = membrane_like(60, 5)
    path = tmp_path / "residues.tsv"
    pd.DataFrame({"id": [p[0] for p in proteins], "sequence": [p[1] for p in proteins],
                  "hydrophobic": [per_residue_labels(p[1]) for p in proteins]}).to_csv(path, sep="\t", index=False)
    out = tmp_path / "teacher-tokens"
    assert main(["-q", "finetune", "--model", str(teacher), "--train", str(path), "--label-column", "hydrophobic",
                 "--task", "tokens", "--output", str(out), "--epochs", "2", "--valid-fraction", "0.3", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["kind"] == "esmc" and metrics["frozen_probe"]["valid"]["mcc"] > 0.5
    assert json.loads((out / "config.json").read_text())["architectures"] == ["ESMCForTokenClassification"]
    assert (out / "modeling_esmc.py").is_file()


def test_test_fraction_holds_out_a_hashed_test_set(model_dir: Path, synthetic_fastas: dict[str, Path],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from protkit.data.filter import split_of
    from protkit.finetune.settings import TEST_SALT

    out = tmp_path / "held"
    base = ["-q", "finetune", "--model", str(model_dir), "--train", str(synthetic_fastas["train"]), "--label-regex",
            LABEL_REGEX, "--epochs", "1", "--no-baselines", *FAST]
    assert main([*base, "--test-fraction", "0.25", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ids = [r.id for r in read_fasta(synthetic_fastas["train"])]
    expected = sum(split_of(i, TEST_SALT, 0.25) == "test" for i in ids)
    assert metrics["n"]["test"] == expected == metrics["finetuned"]["test"]["n"] and 30 < expected < 90
    assert metrics["n"]["train"] + metrics["n"]["valid"] + expected == len(ids)
    assert metrics["settings"]["test_fraction"] == 0.25
    both = [*base, "--test-fraction", "0.25", "--test", str(synthetic_fastas["test"]), "--output", str(tmp_path / "b")]
    assert main(both) == 2
    err = capsys.readouterr().err
    assert err.startswith("protkit: error: give --test FILE or --test-fraction, not both") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
