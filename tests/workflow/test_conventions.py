"""The workflow follows the Snakemake catalog's conventions: every rule that runs protkit names the
conda environment, heavy rules keep a benchmark, scripts are thin calls of protkit functions, and the
catalog's files (config/README.md, .snakemake-workflow-catalog.yml) are there."""

from __future__ import annotations

import ast
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline_fixtures import REPO, snakemake, tiny_config, write_config

RULES = REPO / "workflow" / "rules"
SCRIPTS = REPO / "workflow" / "scripts"
HEAVY = {"filter_split", "teacher_cache", "teacher_cache_part", "teacher_cache_gather", "distill", "evaluate",
         "embed_shard", "search_index", "search_queries", "dedup", "cluster"}


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, from every workflow/rules/*.smk (``use rule ... as X`` included)."""
    blocks = {}
    for path in sorted(RULES.glob("*.smk")):
        text = path.read_text()
        starts = list(re.finditer(r"^(?:rule (\w+)|use rule \w+ as (\w+) with):", text, re.M))
        for match, following in zip(starts, [*starts[1:], None]):
            blocks[match.group(1) or match.group(2)] = text[match.start():following.start() if following else None]
    return blocks


def test_every_rule_that_runs_protkit_names_the_conda_env_and_a_log() -> None:
    blocks = rule_blocks()
    runners = {name for name, text in blocks.items() if "script:" in text}
    assert runners >= {"filter_split", "teacher_cache", "distill", "quantize", "evaluate", "embed_shard", "dedup"}
    for name in runners:
        assert re.search(r"conda:\n\s+PROTKIT_ENV\n", blocks[name]), f"rule {name} has no conda: PROTKIT_ENV"
        assert "log:" in blocks[name], f"rule {name} has no log:"
    assert 'PROTKIT_ENV = "../../envs/protkit.yaml"' in (RULES / "common.smk").read_text()
    assert (REPO / "envs" / "protkit.yaml").is_file() and (REPO / "envs" / "protkit.post-deploy.sh").is_file()


def test_heavy_rules_keep_a_benchmark() -> None:
    blocks = rule_blocks()
    missing = sorted(name for name in HEAVY if "benchmark:" not in blocks[name]
                     and not (name == "teacher_cache_part" and "benchmark:" in blocks["teacher_cache"]))
    assert missing == []


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_scripts_are_thin_calls_of_protkit_functions(script: str) -> None:
    text = (SCRIPTS / script).read_text()
    tree = ast.parse(text)
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "protkit.io.logs" in modules, "a script starts its job with protkit.io.logs.start_job"
    assert not any(m.startswith("protkit.cli") for m in modules if m), "rules call library functions, not the CLI"
    assert not any(isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While)) for node in ast.walk(tree))
    assert len(text.splitlines()) <= 30


def fake_conda(directory: Path) -> Path:
    """A ``conda`` that answers what Snakemake asks while planning (info, version, channel priority);
    used only where no conda is installed (CI machines have none). It creates nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    conda = directory / "conda"
    conda.write_text(
        "#!/usr/bin/env bash\n"
        f'case "$1" in\n'
        f"  info) echo '{{\"conda_prefix\": \"{directory}\", \"platform\": \"linux-64\"}}';;\n"
        "  --version) echo 'conda 24.11.0';;\n"
        "  config) echo '{\"get\": {\"channel_priority\": \"strict\"}}';;\n"
        "  *) echo \"fake conda cannot $1\" >&2; exit 1;;\n"
        "esac\n"
    )
    conda.chmod(0o755)
    return directory


def test_dry_run_with_conda_deployment_plans_the_env(tmp_path: Path) -> None:
    env = {}
    if shutil.which("conda") is None:
        env["PATH"] = f"{fake_conda(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}"
    config = write_config(tmp_path / "work", tiny_config())
    result = snakemake(tmp_path / "work", config, "-n", "--sdm", "conda", env=env)
    output = result.stdout + result.stderr
    created = re.findall(r"Conda environment (\S+) will be created", output)
    assert [Path(p).resolve() for p in created] == [REPO / "envs" / "protkit.yaml"], output[-2000:]
    assert "embed_shard" in output and "distill" in output


def test_catalog_files() -> None:
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert "--configfile config/demo.yaml" in usage["mandatory-flags"]["flags"]
    assert (REPO / "config" / "demo.yaml").is_file()
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True
    readme = (REPO / "config" / "README.md").read_text()
    schema = yaml.safe_load((REPO / "protkit" / "config" / "schema.yaml").read_text())
    assert [key for key in schema["properties"] if f"`{key}" not in readme] == []
    for topic in ("own proteins", "own teacher weights", "Add a variant"):
        assert topic in readme
