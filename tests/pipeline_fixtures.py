"""A tiny, fast configuration of the real workflow, for tests that run Snakemake end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
DEMO_PROTEOME = "pyhmmer:tests/data/seqs/938293.PRJEB85.HG003687.faa"


def tiny_config(n_variants: int = 2, embed_inputs: dict[str, str] | None = None, shards: int = 2) -> dict:
    """The demo configuration shrunk to run in well under a minute on 2 cores."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["dataset"] = "tiny"
    config["data"].update(max_length=200, test_fraction=0.2)
    config["teachers"]["demo_esmc"].update(random={"d_model": 64, "n_heads": 1, "n_layers": 2, "seed": 0},
                                           shard_size=256, max_tokens_per_batch=4096)
    base = config["variants"]["demo-small"]
    base["architecture"].update(d_model=32, n_layers=1, context_length=256)
    base["training"].update(max_steps=6, warmup_steps=2, eval_every=3, checkpoint_every=3, batch_tokens=4096)
    config["variants"] = {f"v{i}": yaml.safe_load(yaml.safe_dump(base)) for i in range(n_variants)}
    config["evaluate"].update(max_sequences=50, throughput_sequences=8, max_tokens=4096)
    config["embed"].update(
        inputs=embed_inputs if embed_inputs is not None else {"PKSI": "pyhmmer:tests/data/seqs/PKSI.faa"},
        models=["v0", "v0-int8"],
        shards=shards,
        residues_per_shard=1000,  # every file of the tests gets the most shards: the scatter/gather is tested
        max_tokens=4096,
    )
    # Fine-tuning on labels every header has: Prodigal's start type (ATG, GTG, TTG, Edge), one short epoch.
    config["finetune"] = {"start_codon": {"model": "v0", "train": config["data"]["paths"][0],
                                          "label_regex": r"start_type=(\w+)", "epochs": 1, "max_length": 130,
                                          "batch_tokens": 8192}}
    return config


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, configfile: Path, *args: str,
                      env: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment (offline Hub, venv first on PATH) of a snakemake run."""
    exe = Path(sys.executable).with_name("snakemake")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}",
                **(env or {})}
    cmd = [str(exe), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--configfile", str(configfile),
           *args]
    return cmd, full_env


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 900, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` with ``configfile`` (the venv's snakemake)."""
    cmd, full_env = snakemake_command(workdir, configfile, *args, env=env)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}): {' '.join(cmd)}\n"
                             f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from a ``snakemake -n`` run's "Job stats" table ({} if nothing to do)."""
    text = result.stdout + result.stderr
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:", 1)[1].splitlines()
    counts: dict[str, int] = {}
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


_JOB_HEADER = re.compile(r"^(?:local)?rule (\S+):$")


def _assignments(text: str) -> dict[str, str]:
    """``"a=1, b=x"`` -> ``{"a": "1", "b": "x"}``."""
    return dict(item.split("=", 1) for item in text.split(", ") if "=" in item)


def planned_job_details(result: subprocess.CompletedProcess) -> list[dict]:
    """Every job block a snakemake run printed (``rule X:`` / ``localrule X:``), in order, as
    ``{"rule": X, "wildcards": {name: value}, "resources": {name: value}}`` (values as printed)."""
    jobs: list[dict] = []
    for line in (result.stdout + result.stderr).splitlines():
        header = _JOB_HEADER.match(line)
        if header:
            jobs.append({"rule": header.group(1), "wildcards": {}, "resources": {}})
            continue
        key, _, value = line.strip().partition(": ")
        if jobs and line.startswith("    ") and key in ("wildcards", "resources"):
            jobs[-1][key] = _assignments(value)
    return jobs
