"""``pip install .`` into a fresh virtual environment that has only torch: pyproject.toml lists every
package protkit needs, so ``protkit embed``, ``index`` and ``search`` and ``protkit.load`` work there;
and the container recipe installs what ``make install`` installs."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 1200  # seconds for one pip install (downloads included)
NOT_LISTED = {"esm"}  # its metadata pulls torchvision and torchtext; installed with --no-deps (pyproject.toml)
USED_THROUGH_OTHERS = {"tensorboard": "torch.utils.tensorboard", "onnxscript": "torch.onnx.export(dynamo=True)"}

MAKE_TINY_MODEL = """
import sys, torch
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHash
torch.manual_seed(0)
config = ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64, context_length=512)
ProtHash(config).save_pretrained(sys.argv[1])
"""
CHECK_HITS = """
import sys, pyarrow.parquet as pq
hits = pq.read_table(sys.argv[1]).to_pylist()
best = {h["query_id"]: h["hit_id"] for h in hits if h["rank"] == 1}
assert best == {"q_p03": "p03", "q_p11": "p11"}, best
assert all(h["score"] > 0.999 for h in hits if h["rank"] == 1)
"""
USE_API = """
import sys, numpy as np, protkit
assert "torch" not in sys.modules
vectors = protkit.load(sys.argv[1]).embed(["MKTAYIAKQRQISFVKSHFSRQ", "MSEQNNTEMTFQIQRIYTKDI"])
assert vectors.shape == (2, 64) and vectors.dtype == np.float32
print(protkit.__file__)
"""


def lock_version(name: str) -> str:
    pins = dict(line.split("==") for line in (REPO / "requirements" / "lock.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    return pins[name]


def torch_requirement() -> list[str]:
    """pip arguments for the locked CPU torch: the wheel on disk where ``make install`` finds it
    (``PIP_FIND_LINKS``), else PyTorch's CPU index (PyPI's Linux wheel is the CUDA build)."""
    version = lock_version("torch")
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        wheels = sorted(Path(folder).glob(f"torch-{version}*-cp{sys.version_info.major}{sys.version_info.minor}-*.whl"))
        if wheels:
            return [str(wheels[0])]
    return ["--index-url", "https://download.pytorch.org/whl/cpu", f"torch=={version}"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> set[str]:
    """The distributions of every third-party module that protkit/ imports (the installed mapping)."""
    modules = set()
    for path in (REPO / "protkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= {*sys.stdlib_module_names, "protkit"}
    owners = importlib.metadata.packages_distributions()
    missing = sorted(m for m in modules if m not in owners)
    assert not missing, f"imported but not installed here: {missing}"
    return {normalize(dist) for m in modules for dist in owners[m]}


def test_pyproject_lists_every_imported_package_at_the_locked_versions() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [Requirement(r) for r in project["dependencies"] + [r for rs in extras.values() for r in rs]]
    listed = {normalize(r.name): r for r in requirements}
    core = {normalize(Requirement(r).name) for r in project["dependencies"]}
    needed = imported_distributions() | set(USED_THROUGH_OTHERS)
    assert needed - NOT_LISTED - set(listed) == set(), "add these to pyproject.toml"
    assert NOT_LISTED & set(listed) == set()
    assert {"onnxruntime", "faiss-cpu", "pyarrow", "torch"} <= core  # protkit embed, index, search need them
    assert {"snakemake", "snakemake-executor-plugin-slurm"} <= {normalize(Requirement(r).name)
                                                                 for r in extras["workflow"]}
    pins = {normalize(k): v for k, v in (line.split("==") for line in (REPO / "requirements" / "lock.txt")
                                         .read_text().splitlines() if "==" in line and not line.startswith("#"))}
    outside = {name: str(r.specifier) for name, r in listed.items() if not r.specifier.contains(pins[name])}
    assert outside == {}, "the locked (tested) version must satisfy pyproject.toml's range"


def source_copy(destination: Path) -> Path:
    """What ``pip install .`` reads (a build in the repository would leave build/ there)."""
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    shutil.copytree(REPO / "protkit", destination / "protkit", ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def run(command: list[str], cwd: Path, env: dict, timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_runs_embed_index_search(tmp_path: Path) -> None:
    started = time.monotonic()
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, protkit_cli = str(venv / "bin" / "python"), str(venv / "bin" / "protkit")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PROTKIT_CACHE_DIR=str(tmp_path / "cache"),
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    pip = [python, "-m", "pip", "install", "-q"]
    run([*pip, *torch_requirement()], work, env, INSTALL_TIMEOUT)
    run([*pip, str(source_copy(tmp_path / "source"))], work, env, INSTALL_TIMEOUT)
    run([python, "-m", "pip", "check"], work, env)
    installed = time.monotonic() - started

    assert "--embeddings" in run([protkit_cli, "index", "--help"], work, env)
    run([python, "-c", MAKE_TINY_MODEL, "model"], work, env)
    sequences = {f"p{i:02d}": "".join("ACDEFGHIKLMNPQRSTVWY"[(i * 7 + k * k) % 20] for k in range(30 + 11 * i))
                 for i in range(16)}
    (work / "db.fasta").write_text("".join(f">{k}\n{s}\n" for k, s in sequences.items()))
    (work / "queries.fasta").write_text(f">q_p03\n{sequences['p03']}\n>q_p11\n{sequences['p11']}\n")
    run([protkit_cli, "embed", "--model", "model", "--input", "db.fasta", "--output", "db.parquet"], work, env)
    run([protkit_cli, "index", "--embeddings", "db.parquet", "--output", "db.index"], work, env)
    run([protkit_cli, "search", "--index", "db.index", "--query", "queries.fasta", "--k", "3",
         "--output", "hits.parquet"], work, env)
    run([python, "-c", CHECK_HITS, "hits.parquet"], work, env)
    where = run([python, "-c", USE_API, "model"], work, env).strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the repository
    print(f"pip install: {installed:.0f} s; all: {time.monotonic() - started:.0f} s")


def test_container_recipe_installs_what_make_install_installs() -> None:
    """containers/protkit.def: CPU torch at the locked version, the lock with --no-deps, esm with
    --no-deps from requirements/esm.txt, protkit itself; and it copies the files it installs from."""
    lines = (REPO / "containers" / "protkit.def").read_text().splitlines()
    parts = re.split(r"^%(\w+)[ \t]*$", "\n".join(line for line in lines if not line.startswith("#")), flags=re.M)
    header, sections = parts[0], dict(zip(parts[1::2], parts[2::2]))
    assert re.search(r"^Bootstrap:\s*docker$", header, re.M) and re.search(r"^From:\s*python:3\.11", header, re.M)
    post = sections["post"]
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in sections["arguments"]
    torch_pin = f"torch=={lock_version('torch')}"
    assert f'--index-url "{{{{ TORCH_INDEX }}}}" "{torch_pin}"' in post
    for step in ("--no-deps -r /opt/protkit/requirements/lock.txt", "--no-deps -r /opt/protkit/requirements/esm.txt",
                 "--no-deps --no-build-isolation /opt/protkit"):
        assert step in post, step
    assert post.index("TORCH_INDEX") < post.index("lock.txt") < post.index("esm.txt")  # torch first: pip keeps it
    for needed in ("pyproject.toml", "README.md", "protkit", "requirements"):
        assert re.search(rf"^\s*{needed}\s+/opt/protkit/{needed}$", sections["files"], re.M), needed
        assert (REPO / needed).exists()
