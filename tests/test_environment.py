"""The pinned environment: requirements/lock.txt, top.txt, esm.txt, envs/protkit.yaml and the
installed packages agree with each other."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
REQUIRED = ("torch", "torchao", "snakemake", "huggingface-hub", "safetensors", "transformers", "pytest")


def normalize(name: str) -> str:
    """PEP 503 name normalisation (``PyYAML`` == ``pyyaml``, ``huggingface_hub`` == ``huggingface-hub``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str], source: str) -> dict[str, str]:
    """``name==version`` lines (comments and blanks skipped) -> {normalised name: version}."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{source} line {number}: {line!r} is not an exact 'name==version' pin"
        name = normalize(match.group(1))
        assert name not in pins, f"{source} line {number}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def read_pins(path: Path) -> dict[str, str]:
    return parse_pins(path.read_text().splitlines(), str(path))


@pytest.fixture(scope="module")
def lock(repo_root: Path) -> dict[str, str]:
    return read_pins(repo_root / "requirements" / "lock.txt")


@pytest.fixture(scope="module")
def conda_env(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "envs" / "protkit.yaml").read_text())


@pytest.fixture(scope="module")
def conda_pip(conda_env: dict) -> dict[str, str]:
    sections = [d["pip"] for d in conda_env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "envs/protkit.yaml needs exactly one pip: section"
    return parse_pins(sections[0], "envs/protkit.yaml pip section")


def test_lock_has_the_core_packages(lock: dict[str, str]) -> None:
    assert all(name in lock for name in REQUIRED), sorted(set(REQUIRED) - set(lock))
    assert "esm" not in lock  # installed separately, with --no-deps (requirements/esm.txt)


def test_conda_env_pins_equal_the_lock(conda_pip: dict[str, str], lock: dict[str, str]) -> None:
    different = {name: (version, lock.get(name)) for name, version in conda_pip.items() if lock.get(name) != version}
    assert not different, f"envs/protkit.yaml pins that differ from requirements/lock.txt (yaml, lock): {different}"
    missing = sorted(set(lock) - set(conda_pip))
    assert not missing, f"pinned in requirements/lock.txt but missing from envs/protkit.yaml: {missing}"
    assert all(name in conda_pip for name in REQUIRED)


def test_conda_env_python_and_esm_post_step(conda_env: dict, repo_root: Path) -> None:
    assert "python=3.11" in conda_env["dependencies"]
    assert "pip" in conda_env["dependencies"]
    esm = read_pins(repo_root / "requirements" / "esm.txt")
    assert list(esm) == ["esm"], "requirements/esm.txt should pin esm and nothing else"
    text = (repo_root / "envs" / "protkit.yaml").read_text()
    assert "pip install --no-deps -r requirements/esm.txt" in text, "envs/protkit.yaml must document the esm step"
    assert "pip install --no-deps ." in text


def source_copy(repo_root: Path, destination: Path) -> Path:
    """What ``pip install .`` reads, copied (an in-tree build would leave build/ in the repository)."""
    for name in ("pyproject.toml", "README.md", "requirements/esm.txt", "envs/protkit.post-deploy.sh"):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / name, destination / name)
    shutil.copytree(repo_root / "protkit", destination / "protkit", ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_post_deploy_script_installs_esm_and_protkit(repo_root: Path, tmp_path: Path) -> None:
    """envs/protkit.post-deploy.sh, run as Snakemake runs it (in the new environment, from another
    directory, PROTKIT_SOURCE set by the Snakefile), installs esm and protkit itself, not editable."""
    env, source = tmp_path / "env", source_copy(repo_root, tmp_path / "source")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env)], check=True)
    pip_env = {**os.environ, "PATH": f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}", "PROTKIT_SOURCE": str(source),
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    pip_env.pop("PYTHONPATH", None)
    script = source / "envs" / "protkit.post-deploy.sh"
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=pip_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    probe = ("import importlib.metadata as m, protkit;"
             "print(m.version('esm'), m.version('protkit'), protkit.__file__,"
             " any(str(f) == 'protkit/config/schema.yaml' for f in m.files('protkit')))")
    shown = subprocess.run([str(env / "bin" / "python"), "-c", probe], cwd=tmp_path, env=pip_env,
                           capture_output=True, text=True, check=True).stdout.split()
    esm = read_pins(repo_root / "requirements" / "esm.txt")["esm"]
    assert shown[:2] == [esm, "0.1.0"] and shown[3] == "True"
    assert Path(shown[2]).is_relative_to(env), f"protkit imported from {shown[2]}, not the new environment"


def test_top_level_pins_agree_with_the_lock(repo_root: Path, lock: dict[str, str]) -> None:
    top = read_pins(repo_root / "requirements" / "top.txt")
    different = {name: (version, lock.get(name)) for name, version in top.items() if lock.get(name) != version}
    assert not different, f"requirements/top.txt pins that differ from requirements/lock.txt (top, lock): {different}"
    assert all(name in top for name in ("torch", "torchao", "snakemake"))


def test_installed_packages_match_the_pins(lock: dict[str, str], repo_root: Path) -> None:
    """The running environment is the locked one (a local label such as +cpu or +cu128 is ignored)."""
    expected = {**lock, **read_pins(repo_root / "requirements" / "esm.txt")}
    wrong = {}
    for name, version in expected.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from the pins (pinned, installed): {wrong}"


def test_parse_pins_rejects_loose_requirements() -> None:
    assert parse_pins(["# c", "", "PyYAML==6.0.3", "huggingface_hub==0.36.2"], "x") == {
        "pyyaml": "6.0.3",
        "huggingface-hub": "0.36.2",
    }
    with pytest.raises(AssertionError, match="x line 1: 'torch>=2' is not an exact"):
        parse_pins(["torch>=2"], "x")


def test_every_pin_mentioned_in_the_conda_file_is_current(repo_root: Path, lock: dict[str, str]) -> None:
    """Pins quoted in envs/protkit.yaml's comments (post-steps, CUDA re-install) match too."""
    known = {**lock, **read_pins(repo_root / "requirements" / "esm.txt")}
    text = (repo_root / "envs" / "protkit.yaml").read_text()
    mentioned = re.findall(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)", text)
    stale = {f"{name}=={version}" for name, version in mentioned if known.get(normalize(name)) != version}
    assert not stale, f"envs/protkit.yaml mentions pins that are not in requirements/: {sorted(stale)}"


def test_non_editable_install_runs_the_cli_and_validates_a_config(repo_root: Path, tmp_path: Path) -> None:
    """``pip install .`` (not editable) carries everything protkit reads at run time, the config
    schema included: its CLI starts and a configuration validates outside the repository."""
    target, source = tmp_path / "site", source_copy(repo_root, tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=600)
    assert not list(target.glob("__editable__*")) and (target / "protkit" / "config" / "schema.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    cli = subprocess.run([str(target / "bin" / "protkit"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert cli.returncode == 0 and "embed" in cli.stdout and "search" in cli.stdout, cli.stderr
    probe = ("import sys, protkit; from protkit.config import load;"
             f"config = load({str(repo_root / 'config' / 'demo.yaml')!r});"
             "print(protkit.__file__); print(config['teachers']['demo_esmc']['shard_size'])")
    shown = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr
    where, shard_size = shown.stdout.split()
    assert Path(where).is_relative_to(target) and shard_size == "512"
