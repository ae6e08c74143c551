"""A ProtHash 1.0 (family v1) variant through the workflow: the teacher cache with stage targets, the
distillation on them, the per-stage evaluation, and plan-time errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pipeline_fixtures import planned_jobs, snakemake, tiny_config, write_config

from protkit.models.prothash_v1.model import StagedProtHash

V1 = {
    "teacher": "demo_esmc",
    "architecture": {"family": "v1", "d_model": 32, "heads": 4, "hidden_ratio": 2, "stage_layers": [1, 1, 1, 1],
                     "context_length": 256, "mlm_head": True},
    "training": {"objective": "stages", "max_steps": 6, "warmup_steps": 2, "eval_every": 3, "checkpoint_every": 3,
                 "batch_tokens": 4096, "lr": 0.003},
}


def staged_config() -> dict:
    config = tiny_config(n_variants=1)
    config["teachers"]["demo_esmc"]["random"]["n_layers"] = 4
    config["teachers"]["demo_esmc"]["stage_layers"] = "auto"
    config["variants"]["s1"] = json.loads(json.dumps(V1))
    config["embed"]["models"] = ["s1"]
    return config


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("staged-workflow")
    configfile = write_config(workdir, staged_config())
    targets = ["results/eval/s1/stages.json", "results/embeddings/s1/PKSI.parquet"]
    plan = planned_jobs(snakemake(workdir, configfile, "-n", "--cores", "2", *targets))
    assert plan["distill"] == 1 and plan["evaluate_stages"] == 1 and "quantize" not in plan
    snakemake(workdir, configfile, "--cores", "2", *targets)
    return workdir


def test_the_cache_holds_stage_targets_and_the_student_trains_on_them(staged_run: Path) -> None:
    manifest = json.loads((staged_run / "results/teacher/demo_esmc/tiny/manifest.json").read_text())
    assert (manifest["stage_layers"], manifest["stage_tokens"], manifest["logits"]) == ([0, 1, 2, 3], True, True)
    summary = json.loads((staged_run / "results/models/s1/training_summary.json").read_text())
    assert summary["objective"] == "stages" and summary["teacher_layers"] == [0, 1, 2, 3]
    assert summary["steps"] == 6 and summary["train_loss_end"] < summary["train_loss_start"]
    model = StagedProtHash.from_pretrained(staged_run / "results/models/s1")
    assert model.config.stage_layers == (1, 1, 1, 1) and model.config.teacher_dim == 64


def test_the_stage_evaluation_reports_every_stage(staged_run: Path) -> None:
    metrics = json.loads((staged_run / "results/eval/s1/stages.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == [1, 2, 3, 4]
    assert all(-1 <= s["cosine_mean"] <= 1 and 0 <= s["cka"] <= 1 for s in metrics["stages"])
    assert 0 <= metrics["mlm"]["top1"] <= 1 and metrics["teacher_layers"] == [0, 1, 2, 3]
    text = (staged_run / "results/eval/s1/stages.md").read_text()
    assert text.count("\n| 1 |") + text.count("\n| 2 |") + text.count("\n| 3 |") + text.count("\n| 4 |") == 4


def test_a_v1_student_embeds_in_the_workflow(staged_run: Path) -> None:
    table = pq.read_table(staged_run / "results/embeddings/s1/PKSI.parquet")
    assert table.num_rows > 0 and len(table.column("mean")[0]) == 64


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["teachers"]["demo_esmc"].pop("stage_layers"),
     r"variants\.s1\.training\.stage_targets is 'cache' but the teacher cache holds no per-residue vectors"),
    (lambda c: c["embed"].update(models=["s1-int8"]), r"embed\.models\[0\]: 's1-int8': a ProtHash 1\.0"),
    (lambda c: c["finetune"]["start_codon"].update(model="s1"), r"finetune\.start_codon\.model: 's1' is a ProtHash"),
    (lambda c: c["variants"]["s1"]["training"].update(objective="pooled"),
     r"variants\.s1\.training\.objective must be 'stages'"),
])
def test_plan_time_errors_name_the_key(tmp_path: Path, change, message: str) -> None:
    import re

    config = staged_config()
    change(config)
    result = snakemake(tmp_path, write_config(tmp_path, config), "-n", check=False)
    assert result.returncode != 0 and re.search(message, result.stdout + result.stderr), result.stderr[-3000:]


def test_on_the_fly_plans_no_stage_targets_in_the_cache(tmp_path: Path) -> None:
    config = staged_config()
    config["teachers"]["demo_esmc"].pop("stage_layers")
    config["variants"]["s1"]["training"]["stage_targets"] = "teacher"
    result = snakemake(tmp_path, write_config(tmp_path, config), "-n", "--cores", "1", "results/eval/s1/stages.json")
    assert planned_jobs(result) == {"filter_split": 1, "random_teacher": 1, "teacher_cache": 1, "distill": 1,
                                    "evaluate_stages": 1}
