"""The Snakemake workflow end to end: the plan of the real configuration, config errors before any job,
what a re-run recomputes (nothing, one stage, one variant, one new input), and embedding crash recovery.

One tiny pipeline run (tests/pipeline_fixtures.py) is shared by the module; the tests that follow it
either plan with ``-n`` or change only embedding outputs that they put back.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline_fixtures import (
    DEMO_PROTEOME, REPO, planned_job_details, planned_jobs, snakemake, snakemake_command, tiny_config, write_config,
)
from protkit.io.metadata import read_protkit_metadata
from protkit.io.paths import resolve_data_path
from protkit.sequences.fasta import read_fasta
from protkit.teacher.read import load_pooled

# Any attempt to reach the network fails at once instead of waiting for a timeout.
NO_NETWORK = {"HF_HUB_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
GPU_RULES = {"teacher_cache", "distill", "evaluate"}
CPU_RULES = {"download", "filter_split", "quantize", "eval_summary", "finetune_summary", "headline"}


def _jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Planned job counts per rule, without the target rule ``all``."""
    return {rule: n for rule, n in planned_jobs(result).items() if rule != "all"}


def _wildcards(result: subprocess.CompletedProcess, rule: str, name: str) -> list[str]:
    """The value of wildcard ``name`` in every printed job of ``rule``, sorted."""
    return sorted(job["wildcards"][name] for job in planned_job_details(result) if job["rule"] == rule)


def _derived_config(workdir: Path, config: dict, name: str, change) -> Path:
    """A copy of ``config`` changed by ``change(copy)``, written to ``workdir/name``."""
    changed = copy.deepcopy(config)
    change(changed)
    return write_config(workdir, changed, name)


def _tmp_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tmp"))


# --- the real configuration -----------------------------------------------------------------------
def test_default_config_plans_every_job_offline(tmp_path: Path) -> None:
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "-n", env=NO_NETWORK)
    # The finetune task's DeepLoc file is optional and absent here: only the summary (noting the skip) runs.
    assert _jobs(result) == {"download": 1, "filter_split": 1, "teacher_cache": 2, "distill": 4, "quantize": 4,
                             "evaluate": 4, "eval_summary": 1, "finetune_summary": 1, "headline": 1}
    assert _wildcards(result, "teacher_cache", "teacher") == ["esmc_300m", "esmc_600m"]
    assert _wildcards(result, "distill", "variant") == sorted(["V2-384-Tiny", "V2-384", "V2-512-Tiny", "V2-512"])
    jobs = planned_job_details(result)
    assert {job["rule"] for job in jobs} == GPU_RULES | CPU_RULES | {"all"}
    for job in jobs:
        if job["rule"] in GPU_RULES:
            assert job["resources"].get("gpu") == "1", job
            assert int(job["resources"]["mem_mb"]) >= 16000, job  # config resources.mem_mb_base
        elif job["rule"] in CPU_RULES:
            assert "gpu" not in job["resources"], job
    assert not (tmp_path / "results").exists()


# --- config errors ----------------------------------------------------------------------------------
def _bad_min_length(config: dict) -> None:
    config["data"]["min_length"] = "x"


def _unknown_teacher(config: dict) -> None:
    config["variants"]["v0"]["teacher"] = "esmc_3OOm"


def _misspelled_training_key(config: dict) -> None:
    config["variants"]["v0"]["training"]["lerning_rate"] = 0.001


def _embed_model_without_variant(config: dict) -> None:
    config["embed"]["models"] = ["v0", "v9-int8"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_bad_min_length, ["data.min_length: 'x' is not of type 'integer'"]),
        (_unknown_teacher, ["variants.v0.teacher: 'esmc_3OOm' is not a key of teachers"]),
        (_misspelled_training_key, ["variants.v0.training", "'lerning_rate' was unexpected"]),
        (_embed_model_without_variant, ["embed.models[1]: 'v9-int8' names no variant"]),
    ],
)
def test_config_error_names_key_before_any_job(tmp_path: Path, change, expected: list[str]) -> None:
    # A real run (not -n) of a cheap first target: without validation a job would create results/.
    configfile = _derived_config(tmp_path, tiny_config(), "bad.yaml", change)
    result = snakemake(tmp_path, configfile, "--cores", "1", "results/data/tiny/sequences.parquet", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for text in expected:
        assert text in output
    assert planned_jobs(result) == {}
    assert not (tmp_path / "results").exists()


def test_until_teacher_cache_stops_after_the_cache(tmp_path: Path) -> None:
    configfile = write_config(tmp_path, tiny_config())
    result = snakemake(tmp_path, configfile, "-n", "--until", "teacher_cache")
    assert planned_jobs(result) == {"filter_split": 1, "random_teacher": 1, "teacher_cache": 1}


def test_optional_finetune_task_without_its_file_is_skipped_and_noted(tmp_path: Path) -> None:
    config = tiny_config()
    config["finetune"]["start_codon"].update(train="absent.fasta", optional=True)
    configfile = write_config(tmp_path, config)
    result = snakemake(tmp_path, configfile, "-n", "--cores", "1", "fine_tuning")
    assert planned_jobs(result) == {"finetune_summary": 1, "fine_tuning": 1}
    snakemake(tmp_path, configfile, "--cores", "1", "fine_tuning")
    summary = pd.read_csv(tmp_path / "results" / "finetune" / "summary.tsv", sep="\t")
    assert summary[["task", "model", "status"]].values.tolist() == [["start_codon", "v0", "skipped"]]
    assert "absent.fasta absent" in summary["note"][0]
    config["finetune"]["start_codon"]["optional"] = False
    result = snakemake(tmp_path / "required", write_config(tmp_path / "required", config), "-n", "fine_tuning",
                       check=False)
    assert result.returncode != 0 and "absent.fasta" in result.stdout + result.stderr


def test_outdir_puts_every_result_under_it(tmp_path: Path) -> None:
    config = tiny_config()
    config["outdir"] = "runs/tiny"
    result = snakemake(tmp_path, write_config(tmp_path, config), "-n", "--cores", "1")
    outputs = [line.strip().removeprefix("output: ") for line in result.stdout.splitlines()
               if line.strip().startswith("output: ")]
    files = [f for line in outputs for f in line.split(", ")]
    shared = "resources/"  # downloads and the random teacher: inputs shared by every outdir
    assert len(files) > 30 and all(f.startswith(("runs/tiny/", shared)) for f in files), files
    benchmarks = [line for line in result.stdout.splitlines() if line.strip().startswith("benchmark: ")]
    assert benchmarks and all("runs/tiny/benchmarks/" in line for line in benchmarks)


def test_a_small_file_is_one_embedding_job(tmp_path: Path) -> None:
    config = tiny_config(shards=4)
    config["embed"]["residues_per_shard"] = 2_000_000  # PKSI and LuxC are far smaller
    result = snakemake(tmp_path, write_config(tmp_path, config), "-n", "--cores", "1")
    assert sorted(set(_wildcards(result, "embed_shard", "nshards"))) == ["1"]
    config["embed"]["residues_per_shard"] = 1_000  # every file at embed.shards
    result = snakemake(tmp_path, write_config(tmp_path, config, "many.yaml"), "-n", "--cores", "1")
    assert sorted(set(_wildcards(result, "embed_shard", "nshards"))) == ["4"]


# --- one tiny pipeline run, then what re-runs recompute -------------------------------------------
class Pipeline:
    """A finished tiny run: its directory, config file and config."""

    def __init__(self, workdir: Path, configfile: Path) -> None:
        self.workdir = workdir
        self.configfile = configfile
        self.config = yaml.safe_load(configfile.read_text())

    @property
    def results(self) -> Path:
        return self.workdir / "results"

    def embedding(self, model: str, name: str) -> Path:
        return self.results / "embeddings" / model / f"{name}.parquet"

    def shard(self, model: str, name: str, index: int, count: int) -> Path:
        return self.results / "embeddings" / model / name / f"shard-{index}-of-{count}.parquet"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    workdir = tmp_path_factory.mktemp("pipeline")
    configfile = write_config(workdir, tiny_config(n_variants=2, shards=2))
    snakemake(workdir, configfile, "--cores", "2")
    return Pipeline(workdir, configfile)


def test_outputs(pipeline: Pipeline) -> None:
    summary = pd.read_csv(pipeline.results / "eval" / "summary.tsv", sep="\t")
    expected = {(v, precision, pooling) for v in pipeline.config["variants"] for precision in ("fp32", "int8")
                for pooling in pipeline.config["evaluate"]["poolings"]}
    rows = list(zip(summary["variant"], summary["precision"], summary["pooling"]))
    assert len(rows) == len(expected) and set(rows) == expected
    assert summary["cosine_mean"].between(-1, 1).all()
    embed = pipeline.config["embed"]
    for name, spec in embed["inputs"].items():
        ids = [record.id for record in read_fasta(resolve_data_path(spec))]
        for model in embed["models"]:
            table = pd.read_parquet(pipeline.embedding(model, name))
            assert table["id"].tolist() == ids
            assert set(embed["poolings"]) <= set(table.columns)
            _check_search_outputs(pipeline, model, name, ids)
    _check_finetune_outputs(pipeline)


def _check_finetune_outputs(pipeline: Pipeline) -> None:
    """The finetune stage: a Hugging Face directory with metrics.json per task, and the summary."""
    from transformers import AutoModelForSequenceClassification

    summary = pd.read_csv(pipeline.results / "finetune" / "summary.tsv", sep="\t")
    for task, settings in pipeline.config["finetune"].items():
        directory = pipeline.results / "finetune" / settings["model"] / task
        metrics = json.loads((directory / "metrics.json").read_text())
        assert metrics["task"] == "classification" and metrics["epochs_run"] == settings["epochs"]
        assert set(metrics["labels"]) <= {"ATG", "GTG", "TTG", "Edge"} and metrics["n"]["train"] > 1000
        model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True)
        assert model.config.num_labels == len(metrics["labels"])
        row = summary[summary["task"] == task].iloc[0]
        assert row["status"] == "ok" and row["model"] == settings["model"]
        assert row["finetuned_valid"] == pytest.approx(metrics["finetuned"]["valid"]["mcc"])
    assert (pipeline.results / "finetune" / "learning_curves.png").stat().st_size > 0


def _check_search_outputs(pipeline: Pipeline, model: str, name: str, ids: list[str]) -> None:
    directory = pipeline.results / "search" / model / name
    assert json.loads((directory / "index" / "index.json").read_text())["n"] == len(ids)
    for query, spec in pipeline.config["search"]["queries"].items():
        hits = pd.read_parquet(directory / f"hits-{query}.parquet")
        queries = {record.id: record.description for record in read_fasta(resolve_data_path(spec))}
        query_ids = list(queries)
        # the headers' text after the id rides along: both files' headers have some (Prodigal's)
        assert list(hits.columns) == ["query_id", "hit_id", "rank", "score", "query_description", "hit_description"]
        assert all(queries[q].split(maxsplit=1)[1] == d for q, d in zip(hits["query_id"], hits["query_description"]))
        assert list(dict.fromkeys(hits["query_id"])) == query_ids
        assert set(hits["hit_id"]) <= set(ids) and hits["rank"].max() <= pipeline.config["search"]["k"]
    assert pd.read_parquet(directory / "dedup.parquet")["id"].tolist() == ids
    assert pd.read_parquet(directory / "clusters.parquet")["id"].tolist() == ids
    summary = pd.read_csv(pipeline.results / "search" / "summary.tsv", sep="\t", keep_default_na=False)
    row = summary[(summary["model"] == model) & (summary["name"] == name) & (summary["query"] == "")]
    assert row["proteins"].astype(int).tolist() == [len(ids)]


def test_noop_rerun_plans_nothing(pipeline: Pipeline) -> None:
    assert planned_jobs(snakemake(pipeline.workdir, pipeline.configfile, "-n")) == {}


FINETUNE_JOBS = {"finetune": 1, "finetune_summary": 1}  # tiny_config: one task, on v0
HEADLINE_JOB = {"headline": 1}  # the report's landing page, after any summary (evaluation, search, fine-tuning)


def _search_jobs(n_models: int, n_inputs: int = 1, n_queries: int = 1) -> dict[str, int]:
    """Jobs of the search stage for ``n_models`` models, each on ``n_inputs`` embedded files."""
    pairs = n_models * n_inputs
    return {"search_index": pairs, "search_queries": pairs * n_queries, "dedup": pairs, "cluster": pairs,
            "search_map": pairs, "search_summary": 1}


def test_forcerun_distill_reruns_students_not_teacher(pipeline: Pipeline) -> None:
    result = snakemake(pipeline.workdir, pipeline.configfile, "-n", "--forcerun", "distill")
    # v0 and v0-int8 embed PKSI and the LuxC queries (2 shards each), then the search stage re-runs; v0 is
    # fine-tuned again.
    assert _jobs(result) == {"distill": 2, "quantize": 2, "evaluate": 2, "eval_summary": 1, "embed_shard": 8,
                             "embed_gather": 4, **_search_jobs(2), **FINETUNE_JOBS, **HEADLINE_JOB}
    assert _wildcards(result, "distill", "variant") == ["v0", "v1"]


@pytest.mark.parametrize(
    ("variant", "embeds"),
    # only v0 (fp32 and int8) embeds PKSI and the LuxC queries, searches, and is fine-tuned
    [("v1", {}), ("v0", {"embed_shard": 8, "embed_gather": 4, **_search_jobs(2), **FINETUNE_JOBS})],
)
def test_changed_lr_retrains_only_that_variant(pipeline: Pipeline, variant: str, embeds: dict) -> None:
    def change(config: dict) -> None:
        config["variants"][variant]["training"]["lr"] *= 2

    configfile = _derived_config(pipeline.workdir, pipeline.config, f"lr-{variant}.yaml", change)
    result = snakemake(pipeline.workdir, configfile, "-n")
    assert _jobs(result) == {"distill": 1, "quantize": 1, "evaluate": 1, "eval_summary": 1, **HEADLINE_JOB, **embeds}
    for rule in ("distill", "quantize", "evaluate"):
        assert _wildcards(result, rule, "variant") == [variant]
    if embeds:
        assert set(_wildcards(result, "embed_gather", "model")) == {variant, f"{variant}-int8"}


def test_new_embed_input_runs_only_its_jobs(pipeline: Pipeline) -> None:
    def change(config: dict) -> None:
        config["embed"]["inputs"]["bmy"] = "pyhmmer:tests/data/seqs/PKSI.faa"

    configfile = _derived_config(pipeline.workdir, pipeline.config, "bmy.yaml", change)
    result = snakemake(pipeline.workdir, configfile, "-n")
    models, shards = pipeline.config["embed"]["models"], pipeline.config["embed"]["shards"]
    assert _jobs(result) == {"embed_shard": len(models) * shards, "embed_gather": len(models),
                             **_search_jobs(len(models)), **HEADLINE_JOB}
    assert set(_wildcards(result, "embed_shard", "name")) == {"bmy"}
    assert set(_wildcards(result, "search_index", "name")) == {"bmy"}
    assert _wildcards(result, "embed_gather", "model") == sorted(models)


def test_embedding_crash_redoes_only_missing_shard(pipeline: Pipeline) -> None:
    name, count = "PKSI", pipeline.config["embed"]["shards"]
    lost_shard, lost_gather = pipeline.shard("v0", name, 1, count), pipeline.embedding("v0", name)
    original = pd.read_parquet(lost_gather)
    kept = [pipeline.shard(m, name, i, count) for m in ("v0", "v0-int8") for i in range(count)]
    kept = [p for p in kept if p != lost_shard] + [pipeline.embedding("v0-int8", name)]
    mtimes = {p: p.stat().st_mtime_ns for p in kept}
    lost_shard.unlink()
    lost_gather.unlink()

    result = snakemake(pipeline.workdir, pipeline.configfile, "--cores", "2")
    # and v0's PKSI search
    assert _jobs(result) == {"embed_shard": 1, "embed_gather": 1, **_search_jobs(1), **HEADLINE_JOB}
    assert [(j["rule"], j["wildcards"]) for j in planned_job_details(result) if j["rule"].startswith("embed")] == [
        ("embed_shard", {"model": "v0", "name": name, "shard": "1", "nshards": str(count)}),
        ("embed_gather", {"model": "v0", "name": name}),
    ]
    assert {p: p.stat().st_mtime_ns for p in kept} == mtimes
    rebuilt = pd.read_parquet(lost_gather)
    assert rebuilt["id"].tolist() == original["id"].tolist()
    assert rebuilt[["length", "truncated"]].equals(original[["length", "truncated"]])
    for pooling in pipeline.config["embed"]["poolings"]:
        np.testing.assert_allclose(np.stack(rebuilt[pooling]), np.stack(original[pooling]), rtol=0, atol=1e-6)
    assert _tmp_files(pipeline.results) == []
    assert planned_jobs(snakemake(pipeline.workdir, pipeline.configfile, "-n")) == {}


# --- a real interruption (SIGKILL of snakemake and its jobs) ----------------------------------------
def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _kill_after_first_shard(cmd: list[str], env: dict, log: Path, out_dir: Path, gathered: Path,
                            timeout: float = 300) -> None:
    """Run ``cmd`` and SIGKILL its process group once one embed_shard job has finished (its output
    exists and Snakemake has recorded it: "Finished jobid ... embed_shard") and the gather has not run."""
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while "(Rule: embed_shard)" not in log.read_text() or not any(out_dir.glob("shard-*.parquet")):
            assert proc.poll() is None, f"snakemake ended before the kill:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"no shard finished in {timeout} s:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)
        assert not gathered.exists(), "the gather ran before the kill; use a larger input or more shards"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, "snakemake's jobs outlived SIGKILL of its process group"
        time.sleep(0.05)


def test_killed_embedding_resumes_from_finished_shards(pipeline: Pipeline) -> None:
    name, count = "proteome", 3

    def change(config: dict) -> None:
        config["embed"]["inputs"][name] = DEMO_PROTEOME  # 2,100 proteins
        config["embed"]["shards"] = count

    configfile = _derived_config(pipeline.workdir, pipeline.config, "interrupt.yaml", change)
    target = pipeline.embedding("v0", name)
    out_dir = target.with_suffix("")
    # One core: the shards run one after another, so the kill falls between two of them.
    target_arg = str(target.relative_to(pipeline.workdir))
    cmd, env = snakemake_command(pipeline.workdir, configfile, "--cores", "1", target_arg)
    _kill_after_first_shard(cmd, env, pipeline.workdir / "interrupted.log", out_dir, target)

    # Right after the kill: no gathered file; every file under its final name is a complete shard.
    assert not target.exists()
    finished = sorted(p for p in out_dir.iterdir() if not p.name.startswith("."))
    assert 1 <= len(finished) < count
    for path in finished:
        assert path.name in {f"shard-{i}-of-{count}.parquet" for i in range(count)}
        assert read_protkit_metadata(path)["shard"][1] == count
        assert pq.read_table(path).num_rows > 0
    leftovers = set(_tmp_files(out_dir))
    assert all(p.name.startswith(".shard-") for p in leftovers)
    mtimes = {p: p.stat().st_mtime_ns for p in finished}

    snakemake(pipeline.workdir, configfile, "--unlock")  # the killed run's lock
    result = snakemake(pipeline.workdir, configfile, "--cores", "2", "--rerun-incomplete", target_arg)
    assert _jobs(result) == {"embed_shard": count - len(finished), "embed_gather": 1}
    assert {p: p.stat().st_mtime_ns for p in finished} == mtimes
    ids = [record.id for record in read_fasta(resolve_data_path(DEMO_PROTEOME))]
    assert pd.read_parquet(target, columns=["id"])["id"].tolist() == ids
    assert set(_tmp_files(out_dir)) <= leftovers  # the re-run leaves no temporary file of its own


# --- a teacher cache built by several jobs (teachers.<t>.jobs) --------------------------------------
CACHE = "results/teacher/demo_esmc/tiny"


def _cache_jobs(config: dict, jobs: int, teacher: str = "demo_esmc") -> dict:
    changed = copy.deepcopy(config)
    changed["teachers"][teacher]["jobs"] = jobs
    return changed


def test_scattered_teacher_cache_plans_a_job_per_part_and_a_gather(tmp_path: Path) -> None:
    configfile = write_config(tmp_path, _cache_jobs(tiny_config(), 4))
    result = snakemake(tmp_path, configfile, "-n", "--until", "teacher_cache_gather")
    assert planned_jobs(result) == {"filter_split": 1, "random_teacher": 1, "teacher_cache_part": 4,
                                    "teacher_cache_gather": 1}
    assert _wildcards(result, "teacher_cache_part", "part") == ["0", "1", "2", "3"]
    assert set(_wildcards(result, "teacher_cache_part", "nparts")) == {"4"}


def test_scattered_teacher_beside_a_single_job_teacher_on_gpus(tmp_path: Path) -> None:
    config = _cache_jobs(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), 3, "esmc_600m")
    result = snakemake(tmp_path, write_config(tmp_path, config), "-n", "teacher_caches", env=NO_NETWORK)
    assert _jobs(result) == {"download": 1, "filter_split": 1, "teacher_cache": 1, "teacher_cache_part": 3,
                             "teacher_cache_gather": 1, "teacher_caches": 1}
    assert _wildcards(result, "teacher_cache", "teacher") == ["esmc_300m"]
    assert set(_wildcards(result, "teacher_cache_part", "teacher")) == {"esmc_600m"}
    for job in planned_job_details(result):
        if job["rule"] in ("teacher_cache", "teacher_cache_part"):
            assert job["resources"].get("gpu") == "1", job
        elif job["rule"] == "teacher_cache_gather":
            assert "gpu" not in job["resources"], job


def test_two_job_cache_equals_the_one_job_cache(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("scattered")
    configfile = write_config(workdir, _cache_jobs(pipeline.config, 2))
    target = f"{CACHE}/manifest.json"
    snakemake(workdir, configfile, "--cores", "2", target)
    single = load_pooled(pipeline.workdir / CACHE)

    def check_equal() -> None:
        scattered = load_pooled(workdir / CACHE)
        assert scattered.manifest == {**single.manifest, "parts": 2}
        assert scattered.ids == single.ids and scattered.splits.tolist() == single.splits.tolist()
        for pooling, vectors in single.vectors.items():
            np.testing.assert_array_equal(scattered.vectors[pooling], vectors)  # bit for bit

    check_equal()
    kept = {p: p.stat().st_mtime_ns for p in (workdir / CACHE / "part-0-of-2").iterdir()}
    shutil.rmtree(workdir / CACHE / "part-1-of-2")  # a run killed while one part was being built
    (workdir / CACHE / "manifest.json").unlink()
    result = snakemake(workdir, configfile, "-n", target)
    assert _jobs(result) == {"teacher_cache_part": 1, "teacher_cache_gather": 1}
    assert [j["wildcards"] for j in planned_job_details(result) if j["rule"] == "teacher_cache_part"] == [
        {"teacher": "demo_esmc", "dataset": "tiny", "part": "1", "nparts": "2"}]
    snakemake(workdir, configfile, "--cores", "2", target)
    assert {p: p.stat().st_mtime_ns for p in (workdir / CACHE / "part-0-of-2").iterdir()} == kept
    check_equal()
