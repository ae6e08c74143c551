"""SLURM: the tiny pipeline through a real single-node SLURM with two fake GPUs (../shared/slurm/setup.sh),
the user profile's plan from the repository root, and how memory/runtime requests grow with input size
and retry attempt (a plain dry run, no SLURM).

The cluster needs root and apt (``slurm-wlm``, ``slurmdbd``, ``mariadb-server``); without them the SLURM
tests are skipped, or fail when ``PROTKIT_REQUIRE_SLURM=1`` (set it where the test must run, e.g. in CI).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline_fixtures import (
    REPO, planned_job_details, planned_jobs, snakemake, snakemake_command, tiny_config, write_config,
)

SLURM_DIR = REPO.parent / "shared" / "slurm"
PROFILE = Path(__file__).resolve().parent / "slurm_profile"
GPU_RULES = {"teacher_cache_part", "distill", "evaluate", "embed_shard", "finetune"}  # 2 teacher cache jobs
CPU_RULES = {"filter_split", "teacher_cache_gather", "quantize", "search_index", "dedup", "cluster", "search_map"}
LOCAL_RULES = {"all", "random_teacher", "eval_summary", "embed_gather", "search_summary", "finetune_summary",
               "headline"}
EMBEDDING = "results/embeddings/v0/PKSI.parquet"
SETUP_SECONDS = 300
RUN_SECONDS = 480

slurm = pytest.mark.slurm


# --- the cluster --------------------------------------------------------------------------------
def _unavailable(reason: str) -> None:
    """Skip, or fail where the SLURM test is required (``PROTKIT_REQUIRE_SLURM=1``)."""
    if os.environ.get("PROTKIT_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM test required (PROTKIT_REQUIRE_SLURM=1) but: {reason}")
    pytest.skip(reason)


def _run(cmd: list[str], timeout: int, env: dict | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``cmd`` under ``timeout -k 10`` (TERM, then KILL): a hung SLURM command cannot hang the suite."""
    return subprocess.run(["timeout", "-k", "10", str(timeout), *cmd], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout + 30)


def _pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _foreign_slurm() -> str | None:
    """Why this machine's SLURM must not be touched, or None."""
    conf = Path("/etc/slurm/slurm.conf")
    if conf.is_file() and "ClusterName=ci\n" not in conf.read_text():
        return f"{conf} is another SLURM set-up (not ../shared/slurm/setup.sh's cluster 'ci'); not overwriting it"
    running = [p for p in map(Path, ("/run/slurmctld.pid", "/run/slurmd.pid", "/run/slurmdbd.pid")) if _pid_alive(p)]
    if running:
        return (f"SLURM daemons are already running ({', '.join(map(str, running))}); if an earlier test run "
                f"left them, stop them with `bash {SLURM_DIR / 'teardown.sh'}`")
    return None


def _slurm_wlm_candidate() -> bool:
    policy = _run(["apt-cache", "policy", "slurm-wlm"], 60).stdout
    return "Candidate:" in policy and "Candidate: (none)" not in policy


def _apt_problem() -> str | None:
    """Why apt cannot provide slurm-wlm, or None (runs ``apt-get update`` once when the lists lack it)."""
    if shutil.which("apt-get") is None:
        return "apt-get not found: the SLURM test installs Debian's slurm-wlm"
    if not _slurm_wlm_candidate():
        _run(["apt-get", "update"], 180)
        if not _slurm_wlm_candidate():
            return "apt has no slurm-wlm package (apt-cache policy slurm-wlm shows no candidate)"
    return None


def _clear_state() -> None:
    """Remove SLURM's saved state (jobs, node state): it survives daemon restarts."""
    for path in Path("/var/spool").glob("slurm*"):
        shutil.rmtree(path, ignore_errors=True)


def _installed(package: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return status.stdout.strip() == "install ok installed"


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    """A fresh single-node SLURM (partition ``cpu``, 2 fake GPUs, slurmdbd for sacct), torn down after."""
    if os.geteuid() != 0:
        _unavailable("starting SLURM needs root (apt-get install and the daemons)")
    setup, teardown = SLURM_DIR / "setup.sh", SLURM_DIR / "teardown.sh"
    if not (setup.is_file() and teardown.is_file()):
        _unavailable(f"{SLURM_DIR} has no setup.sh/teardown.sh")
    reason = _foreign_slurm() or _apt_problem()
    if reason:
        _unavailable(reason)
    _clear_state()
    try:
        started = _run(["bash", str(setup)], SETUP_SECONDS, env={**os.environ, "ACCT": "slurmdbd", "FAKE_GPUS": "2"})
        if started.returncode != 0:
            if not _installed("slurm-wlm"):
                _unavailable(f"apt-get could not install slurm-wlm: {started.stderr[-2000:]}")
            pytest.fail(f"{setup} failed ({started.returncode}):\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
        yield
    finally:
        if shutil.which("scancel"):
            _run(["scancel", "--user", "root"], 30)  # this test's cluster: only this test's jobs
        _run(["bash", str(teardown)], 120)
        _clear_state()


# --- runs ---------------------------------------------------------------------------------------
def slurm_config() -> dict:
    """The tiny pipeline, one variant, a teacher cache built by 2 jobs, 2 embedding shards; every GPU rule
    asks for one (fake) GPU.

    ``device: auto`` makes each GPU job log its CUDA_VISIBLE_DEVICES when it falls back to the CPU.
    One CPU and 1 GB per GPU job, so both shards fit on the 2-CPU node at once.
    """
    config = tiny_config(n_variants=1, shards=2)
    config["device"] = "auto"
    config["teachers"]["demo_esmc"]["jobs"] = 2
    config["embed"]["models"] = ["v0"]
    config["search"]["queries"] = {}  # the search stage without query embeddings: fewer jobs to wait for
    config["resources"] = {"gpu": 1, "gpu_model": None, "cpus_per_gpu_job": 1, "mem_mb_base": 1000,
                           "runtime_base": 10}
    return config


def run_on_slurm(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake --profile tests/slurm_profile`` in ``workdir`` under ``timeout -k 10``."""
    cmd, env = snakemake_command(workdir, configfile, "--profile", str(PROFILE), *args)
    return _run(cmd, RUN_SECONDS, env=env)


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


@dataclass
class SlurmJob:
    """One job as ``sacct`` recorded it."""

    job_id: str
    state: str
    start: datetime
    end: datetime
    submit_line: str

    @property
    def rule(self) -> str:
        """The rule the job ran (the plugin submits ``snakemake --allowed-rules <rule>``)."""
        return re.search(r"--allowed-rules (\S+)", self.submit_line).group(1)


def sacct_jobs(result: subprocess.CompletedProcess, since: datetime) -> list[SlurmJob]:
    """The SLURM jobs of one snakemake run (the plugin names every job by the run's ID)."""
    run_id = re.search(r"SLURM run ID: (\S+)", output_of(result)).group(1)
    fields = "JobID,State,Start,End,SubmitLine"
    listed = _run(["sacct", "-n", "-X", "-P", "--name", run_id, "-S", since.isoformat(timespec="seconds"),
                   "-o", fields], 60)
    assert listed.returncode == 0, listed.stderr
    jobs = []
    for line in listed.stdout.splitlines():
        job_id, state, start, end, submit_line = line.split("|", 4)
        jobs.append(SlurmJob(job_id, state, datetime.fromisoformat(start), datetime.fromisoformat(end), submit_line))
    return jobs


@dataclass
class Runs:
    """The same tiny config run through SLURM and locally (``--cores 2``)."""

    config: dict
    slurm_dir: Path
    slurm: subprocess.CompletedProcess
    jobs: list[SlurmJob]
    local_dir: Path


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The local run goes in the background while SLURM's jobs run (they mostly wait on status checks).

    ``--prioritize`` the embedding so that, once the model exists, both shards take the two job slots.
    """
    config = slurm_config()
    slurm_dir, local_dir = tmp_path_factory.mktemp("slurm"), tmp_path_factory.mktemp("local")
    local_cmd, local_env = snakemake_command(local_dir, write_config(local_dir, config), "--cores", "2")
    local_log = local_dir / "snakemake.out"
    with local_log.open("w") as log:
        local = subprocess.Popen(["timeout", "-k", "10", str(RUN_SECONDS), *local_cmd], env=local_env,
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        since = datetime.now().replace(microsecond=0) - timedelta(seconds=1)
        result = run_on_slurm(slurm_dir, write_config(slurm_dir, config), "--prioritize", EMBEDDING)
        assert result.returncode == 0, f"SLURM run failed ({result.returncode}):\n{output_of(result)[-8000:]}"
        local.wait(timeout=RUN_SECONDS + 30)
    finally:
        if local.poll() is None:
            local.terminate()  # `timeout` passes TERM on to snakemake
            local.wait(timeout=30)
    assert local.returncode == 0, f"local run failed ({local.returncode}):\n{local_log.read_text()[-8000:]}"
    return Runs(config, slurm_dir, result, sacct_jobs(result, since), local_dir)


def gpu_job_logs(config: dict) -> dict[str, list[str]]:
    """The rule log files of the GPU jobs of :func:`slurm_config`, by rule."""
    variants, shards = list(config["variants"]), config["embed"]["shards"]
    return {
        "teacher_cache_part": [f"logs/teacher_cache/{t}-{config['dataset']}-{p}-of-{c['jobs']}.log"
                               for t, c in config["teachers"].items() for p in range(c["jobs"])],
        "distill": [f"logs/distill/{v}.log" for v in variants],
        "evaluate": [f"logs/evaluate/{v}.log" for v in variants],
        "embed_shard": [f"logs/embed/{m}/{name}-{i}-of-{shards}.log" for m in config["embed"]["models"]
                        for name in config["embed"]["inputs"] for i in range(shards)],
        "finetune": [f"logs/finetune/{t['model']}/{name}.log" for name, t in config["finetune"].items()],
    }


def visible_devices(log: Path) -> set[str]:
    """CUDA_VISIBLE_DEVICES values a job reported (protkit.models.device warns with it on the CPU fallback)."""
    return set(re.findall(r"CUDA_VISIBLE_DEVICES=([^)\s]*)\)", log.read_text()))


# --- the SLURM run ------------------------------------------------------------------------------
@slurm
def test_every_cluster_job_went_through_sbatch(runs: Runs) -> None:
    text = output_of(runs.slurm)
    local = set(re.findall(r"^localrule (\S+):$", text, flags=re.M))
    assert local == LOCAL_RULES
    planned = planned_jobs(runs.slurm)
    expected = {rule: n for rule, n in planned.items() if rule not in local}
    assert set(expected) == GPU_RULES | CPU_RULES
    assert Counter(job.rule for job in runs.jobs) == expected
    assert {job.state for job in runs.jobs} == {"COMPLETED"}
    assert len(re.findall(r"has been submitted with SLURM jobid", text)) == len(runs.jobs)


@slurm
def test_gpu_rules_get_a_gpu_and_cpu_rules_none(runs: Runs) -> None:
    for job in runs.jobs:
        if job.rule in GPU_RULES:
            assert "--gpus=1" in job.submit_line, job
        else:
            assert "--gpus" not in job.submit_line and "--gres" not in job.submit_line, job
    for rule, logs in gpu_job_logs(runs.config).items():
        for log in logs:
            devices = visible_devices(runs.slurm_dir / log)
            assert len(devices) == 1 and devices <= {"0", "1"}, (rule, log, devices)  # slurmd set it to a fake GPU


@slurm
def test_embedding_shards_ran_side_by_side_on_two_gpus(runs: Runs) -> None:
    shards = [job for job in runs.jobs if job.rule == "embed_shard"]
    assert len(shards) == 2
    assert max(job.start for job in shards) < min(job.end for job in shards), shards
    devices = [visible_devices(runs.slurm_dir / log) for log in gpu_job_logs(runs.config)["embed_shard"]]
    assert devices[0] | devices[1] == {"0", "1"}, devices


@slurm
def test_slurm_outputs_equal_a_local_run(runs: Runs) -> None:
    on_slurm = pq.read_table(runs.slurm_dir / EMBEDDING)
    local = pq.read_table(runs.local_dir / EMBEDDING)
    assert on_slurm.column_names == local.column_names
    assert on_slurm["id"].to_pylist() == local["id"].to_pylist()
    assert on_slurm.num_rows > 0
    for pooling in runs.config["embed"]["poolings"]:
        np.testing.assert_allclose(np.array(on_slurm[pooling].to_pylist()), np.array(local[pooling].to_pylist()),
                                   rtol=0, atol=1e-5)


@slurm
def test_a_failed_job_fails_the_run_and_names_its_log(runs: Runs) -> None:
    bad = runs.slurm_dir / "bad.fasta"
    bad.write_text("MKTAYIAKQR\n>p1\nMKTAYIAKQR\n")
    config = copy.deepcopy(runs.config)
    config["embed"]["inputs"]["bad"] = str(bad)
    configfile = write_config(runs.slurm_dir, config, "bad.yaml")
    since = datetime.now().replace(microsecond=0) - timedelta(seconds=1)
    result = run_on_slurm(runs.slurm_dir, configfile, "results/embeddings/v0/bad/shard-0-of-2.parquet")
    assert result.returncode != 0
    log = "logs/embed/v0/bad-0-of-2.log"
    assert log in output_of(result)
    assert "sequence data before the first '>' header" in (runs.slurm_dir / log).read_text()
    assert [(job.rule, job.state) for job in sacct_jobs(result, since)] == [("embed_shard", "FAILED")]


# --- the user profile ---------------------------------------------------------------------------
@slurm
def test_user_profile_plans_gpu_jobs_from_the_repository_root(slurm_cluster) -> None:
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}"}
    result = _run([str(exe), "--profile", "slurm", "-n"], 300, env=env, cwd=REPO)
    assert result.returncode == 0, output_of(result)[-6000:]
    assert {"teacher_cache", "distill", "evaluate"} <= set(planned_jobs(result))
    for job in planned_job_details(result):
        if job["rule"] in GPU_RULES | {"teacher_cache"}:  # the real config builds its cache in one job
            assert job["resources"].get("gpu") == "1", job
            assert job["resources"].get("slurm_partition") == "gpu", job
            # sbatch then asks for the rule's threads (resources.cpus_per_gpu_job), not a profile-wide value
            assert "cpus_per_task" not in job["resources"], job
        elif job["rule"] in CPU_RULES:
            assert "gpu" not in job["resources"], job
            assert job["resources"].get("slurm_partition") == "cpu", job


# --- resource growth (no SLURM) -----------------------------------------------------------------
def _write_fasta(path: Path, n_records: int, length: int) -> Path:
    residues = "ACDEFGHIKLMNPQRSTVWY"
    seq = (residues * (length // len(residues) + 1))[:length]
    path.write_text("".join(f">p{i}\n{seq}\n" for i in range(n_records)))
    return path


def test_memory_and_runtime_grow_with_input_size_and_attempt(tmp_path: Path) -> None:
    small = _write_fasta(tmp_path / "small.fasta", 3, 100)
    big = _write_fasta(tmp_path / "big.fasta", 25_000, 1_000)  # 25 MB: +100 MB memory, +2 min runtime
    config = slurm_config()
    config["embed"].update(inputs={"small": str(small), "big": str(big)}, shards=1)
    configfile = write_config(tmp_path, config)
    targets = [f"results/embeddings/v0/{name}/shard-0-of-1.parquet" for name in ("small", "big")]
    requests = {}
    for attempt in (1, 2):
        # --attempt: what a job resubmitted after a failure evaluates its resources with.
        result = snakemake(tmp_path, configfile, "-n", "--attempt", str(attempt), *targets)
        for job in planned_job_details(result):
            if job["rule"] in ("embed_shard", "filter_split"):
                key = (job["rule"], job["wildcards"].get("name"), attempt)
                requests[key] = {r: int(job["resources"][r]) for r in ("mem_mb", "runtime")}
    for rule, name in (("embed_shard", "small"), ("embed_shard", "big"), ("filter_split", None)):
        first, second = requests[(rule, name, 1)], requests[(rule, name, 2)]
        for resource in ("mem_mb", "runtime"):
            assert second[resource] >= 2 * first[resource] > 0, (rule, name, resource, first, second)
    for attempt in (1, 2):
        small_job, big_job = requests[("embed_shard", "small", attempt)], requests[("embed_shard", "big", attempt)]
        assert big_job["mem_mb"] > small_job["mem_mb"]
        assert big_job["runtime"] > small_job["runtime"]
