"""protkit.evaluate.stage_run / stage_report: a ProtHash 1.0 student against a tiny random ESMC
teacher on the held-out split: the streamed metrics equal a direct computation sequence by sequence,
a student that is the teacher scores 1, the teacher layers' sources, the files, and errors that
name what to fix."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from protkit.data.table import SCHEMA
from protkit.evaluate.stage_report import stage_report_markdown
from protkit.evaluate.stage_run import evaluate_staged, evaluate_staged_variant, student_teacher_layers
from protkit.evaluate.stages import P05_RESOLUTION, linear_cka
from protkit.models.prothash_v1 import PRESETS, StagedProtHash
from protkit.sequences.tokenize import VOCAB_SIZE, encode_one
from protkit.teacher import build_cache, teacher_from_config, write_random_teacher

TEACHER_RANDOM = {"d_model": 96, "n_heads": 2, "n_layers": 5, "seed": 0}  # as a config's teacher.random
STUDENT = PRESETS["ProtHash-1.0-Tiny"]  # d_model 64, adapters to 96, MLM head
DEFAULT_LAYERS = (1, 2, 3, 4)  # spread over the teacher's 5 blocks (no ProtHash 1.0 layers for "tiny")
MAX_LENGTH = 48  # the cache's: some sequences are truncated
AMINO = list("ACDEFGHIKLMNPQRSTVWY")
N_TEST = 9


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A sequences table (9 test, 11 train), the random teacher's weights, its cache, a student."""
    root = tmp_path_factory.mktemp("staged")
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(AMINO, int(n))) for n in rng.integers(4, 70, size=20)]
    table = pd.DataFrame({"id": [f"P{i:02d}" for i in range(20)], "sequence": seqs, "length": [len(s) for s in seqs],
                          "split": ["test"] * N_TEST + ["train"] * (20 - N_TEST), "aliases": [""] * 20})
    pq.write_table(pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False), root / "sequences.parquet")
    weights = write_random_teacher(TEACHER_RANDOM, root / "teacher" / "weights.safetensors")
    teacher, sha = teacher_from_config(weights, TEACHER_RANDOM, "cpu")
    build_cache(teacher, table, root / "cache", weights_sha256=sha, teacher_name="tiny", dataset="unit",
                max_length=MAX_LENGTH, max_tokens_per_batch=1024, poolings=("mean",), store_dtype="fp16")
    torch.manual_seed(0)
    StagedProtHash(STUDENT).save_pretrained(root / "student")
    return {"root": root, "sequences": root / "sequences.parquet", "weights": weights, "cache": root / "cache",
            "student": root / "student", "table": table, "teacher": teacher}


def run(files: dict, out_dir, **overrides) -> dict:
    args = dict(teacher_random=TEACHER_RANDOM, max_tokens=160, device="cpu", throughput_sequences=4, variant="tiny")
    return evaluate_staged_variant(files["sequences"], files["cache"], files["student"], out_dir, str(files["weights"]),
                                   **{**args, **overrides})


@pytest.fixture(scope="module")
def evaluated(files) -> dict:
    return run(files, files["root"] / "eval")


def direct(student: StagedProtHash, teacher, sequences: list[str], layers) -> dict:
    """Per stage the residue rows of each sequence run alone, concatenated: adapted, native, teacher;
    and the MLM argmaxes.  # each (n, D)"""
    rows = {"adapted": [[] for _ in layers], "native": [[] for _ in layers], "teacher": [[] for _ in layers],
            "student_mlm": [], "teacher_mlm": []}
    with torch.inference_mode():
        for s in sequences:
            ids = torch.tensor([encode_one(s, MAX_LENGTH)])  # (1, L)
            out = teacher(ids, output_hidden_states=True)
            native = student.stages(ids)
            for i, layer in enumerate(layers):
                rows["teacher"][i].append(out.hidden_states[layer][0, 1:-1].double())
                rows["native"][i].append(native[i][0, 1:-1].double())
                rows["adapted"][i].append(student.stages_teacher(ids)[i][0, 1:-1].double())
            rows["student_mlm"].append(student.mlm_logits(ids)[0, 1:-1].argmax(-1))
            rows["teacher_mlm"].append(out.logits[0, 1:-1, :VOCAB_SIZE].argmax(-1))
    return rows


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def test_metrics_equal_a_direct_computation(files, evaluated):
    student = StagedProtHash.from_pretrained(files["student"])
    test = files["table"][files["table"]["split"] == "test"]
    rows = direct(student, files["teacher"], list(test["sequence"]), DEFAULT_LAYERS)
    n = sum(min(len(s), MAX_LENGTH - 2) for s in test["sequence"])
    assert (evaluated["residues"], evaluated["sequences"], evaluated["n_sequences"]) == (n, N_TEST, N_TEST)
    assert evaluated["teacher_layers"] == list(DEFAULT_LAYERS)
    assert [s["stage"] for s in evaluated["stages"]] == [1, 2, 3, 4]
    for i, stage in enumerate(evaluated["stages"]):
        adapted, native, teacher = (torch.cat(rows[k][i]) for k in ("adapted", "native", "teacher"))
        values = cosines(adapted, teacher).numpy()
        assert stage["cosine_mean"] == pytest.approx(values.mean(), abs=1e-6)
        assert abs(stage["cosine_p05"] - np.percentile(values, 5)) <= P05_RESOLUTION + 1e-6
        assert stage["cka"] == pytest.approx(linear_cka(native, teacher), abs=1e-6)
        assert (stage["student_width"], stage["teacher_width"]) == (STUDENT.d_model, TEACHER_RANDOM["d_model"])
    predicted, reference = torch.cat(rows["student_mlm"]), torch.cat(rows["teacher_mlm"])
    assert evaluated["mlm"]["residues"] == n
    assert evaluated["mlm"]["top1"] == pytest.approx(float((predicted == reference).double().mean()), abs=1.5 / n)
    pooled = [cosines(a.mean(0), t.mean(0)) for a, t in zip(rows["adapted"][3], rows["teacher"][3])]
    assert evaluated["pooled_cosine_last"] == pytest.approx(float(torch.stack(pooled).mean()), abs=1e-6)


def test_run_metadata_and_throughput(files, evaluated):
    assert evaluated["student_parameters"] == STUDENT.parameter_count
    assert evaluated["device"] == "cpu" and evaluated["split"] == "test" and evaluated["max_length"] == MAX_LENGTH
    assert evaluated["teacher"] == "tiny" and evaluated["teacher_layers_source"].startswith("the default for teacher")
    throughput = evaluated["throughput"]
    assert throughput["teacher"]["sequences"] == throughput["student"]["sequences"] == 4
    assert throughput["teacher"]["residues"] == throughput["student"]["residues"] > 0
    rates = throughput["teacher"]["residues_per_s"], throughput["student"]["residues_per_s"]
    assert throughput["speedup"] == pytest.approx(rates[1] / rates[0])


def test_files(files, evaluated):
    out = files["root"] / "eval"
    assert json.loads((out / "stages.json").read_text()) == json.loads(json.dumps(evaluated))
    text = (out / "stages.md").read_text()
    assert text == stage_report_markdown(evaluated)
    assert text.startswith("# tiny: ProtHash 1.0 stages against the teacher tiny")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[1] for row in rows] == [str(layer) for layer in DEFAULT_LAYERS]  # 4 stages
    assert "MLM head against the teacher's" in text and "Pooled cosine, last stage" in text
    assert "× the teacher's" in text and "residues/s) on cpu" in text
    assert sorted(p.name for p in out.iterdir()) == ["stages.json", "stages.md"]  # no locks or temporaries left


def test_a_student_that_is_the_teacher_scores_one(files, monkeypatch):
    """Stages = the teacher's layers (d_model = teacher width: identity adapters), head = the teacher's."""
    teacher, layers = files["teacher"], (0, 2, 3, 4)
    student = StagedProtHash(replace(STUDENT, d_model=TEACHER_RANDOM["d_model"], heads=4)).eval()
    assert all(isinstance(a, torch.nn.Identity) for a in student.adapters)

    def stages(input_ids, attention_mask=None, upto=4):
        hidden = teacher(input_ids, attention_mask, output_hidden_states=True).hidden_states
        return tuple(hidden[layer] for layer in layers[:upto])

    class TeacherHead(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return teacher.sequence_head(teacher.transformer.norm(x))[..., :VOCAB_SIZE]

    monkeypatch.setattr(student, "stages", stages)
    student.mlm_head = TeacherHead()
    tokens = [encode_one(s, MAX_LENGTH) for s in files["table"]["sequence"]]
    result = evaluate_staged(student, teacher, tokens, layers, max_tokens=200, throughput_sequences=3)
    for stage in result["stages"]:
        assert stage["cosine_mean"] == pytest.approx(1.0, abs=1e-6)
        assert stage["cka"] == pytest.approx(1.0, abs=1e-6)
        assert stage["cosine_p05"] == pytest.approx(1.0, abs=P05_RESOLUTION + 1e-6)
    assert result["mlm"]["top1"] == result["mlm"]["macro_f1"] == 1.0
    assert result["pooled_cosine_last"] == pytest.approx(1.0, abs=1e-6)


def test_teacher_layers_from_the_training_summary_or_given(files, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    assert student_teacher_layers(model, "esmc_300m", 30) == ((7, 15, 22, 29), "the default for teacher esmc_300m "
                                                                               "of 30 blocks")
    (model / "training_summary.json").write_text(json.dumps({"teacher_layers": [0, 1, 3, 4]}))
    assert student_teacher_layers(model, "tiny", 5) == ((0, 1, 3, 4), f"{model / 'training_summary.json'} "
                                                                      "(teacher_layers)")
    assert student_teacher_layers(model, "tiny", 5, [1, 1, 2, 2])[0] == (1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"summary.json \(teacher_layers\): stage_layers \[0, 1, 3, 4\].*0 .. 3"):
        student_teacher_layers(model, "tiny", 4)
    (model / "training_summary.json").write_text(json.dumps({"teacher_layers": "7,15"}))
    with pytest.raises(ValueError, match="training_summary.json: teacher_layers must be a list"):
        student_teacher_layers(model, "tiny", 5)
    (model / "training_summary.json").write_text("{")
    with pytest.raises(ValueError, match="training_summary.json: cannot read it as JSON"):
        student_teacher_layers(model, "tiny", 5)


def test_errors_name_what_to_fix(files, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent' / 'config.json'}: no ProtHash 1.0 model"):
        run(dict(files, student=tmp_path / "absent"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"teacher_layers \(given\): stage_layers \[1, 2, 3, 5\].*0 .. 4"):
        run(files, tmp_path / "out", teacher_layers=[1, 2, 3, 5])
    with pytest.raises(ValueError, match=r"3 teacher layers \[1, 2, 3\] for a student of 4 stages"):
        run(files, tmp_path / "out", teacher_layers=[1, 2, 3])
    only_train = files["table"].assign(split="train")
    pq.write_table(pa.Table.from_pandas(only_train, schema=SCHEMA, preserve_index=False), tmp_path / "train.parquet")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'train.parquet'}: no sequences with split == 'test' "
                                         r"\(column split has: train 20\)"):
        run(dict(files, sequences=tmp_path / "train.parquet"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="absent.parquet: no sequences table"):
        run(dict(files, sequences=tmp_path / "absent.parquet"), tmp_path / "out")
    other = write_random_teacher({**TEACHER_RANDOM, "seed": 1}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"cache[/\\]manifest.json: the cache was built with teacher weights"):
        run(dict(files, weights=other), tmp_path / "out")
    assert not (tmp_path / "out").exists()
