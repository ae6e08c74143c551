"""Fault injection: SIGKILL at each write phase of embed, index, dedup, cluster, hash and the teacher
cache; a full disk and a read-only file system; two writers of one output. Each case ends either in
the complete, correct output, or in exit 2 with one ``protkit: error:`` line, no traceback and no
stray file; after a kill, a re-run of the same command gives the uninterrupted run's output."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from protkit.cli.main import main
from protkit.sequences.fasta import read_fasta, write_fasta

# Runs ENTRY (Python code) with os.replace, the last step of every atomic write, wrapped: at its
# KILL_AT-th call the process is killed (SIGKILL) before or after the rename, or pauses.
KILLER = """
import os, signal, sys, time
kill_at, when, real, calls = int(os.environ["KILL_AT"]), os.environ["KILL_WHEN"], os.replace, [0]
def replace(src, dst, *args, **kwargs):
    calls[0] += 1
    hit = calls[0] == kill_at
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    if hit and when == "pause":
        time.sleep(float(os.environ["PAUSE"]))
    real(src, dst, *args, **kwargs)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
exec(os.environ["ENTRY"])
"""
CLI = "import sys; from protkit.cli import main; sys.exit(main({args!r}))"


def killed(entry: str, kill_at: int, when: str, pause: float = 0.0, wait: bool = True):
    env = {**os.environ, "KILL_AT": str(kill_at), "KILL_WHEN": when, "PAUSE": str(pause), "ENTRY": entry,
           "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", KILLER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    if not wait:
        return process
    out, err = process.communicate(timeout=300)
    return process.returncode, err


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def table(path: Path):
    return pq.read_table(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict:
    """A FASTA file of 40 real proteins, and the outputs of uninterrupted runs (the references)."""
    import importlib.resources

    root = tmp_path_factory.mktemp("faults")
    proteome = importlib.resources.files("pyhmmer") / "tests/data/seqs/938293.PRJEB85.HG003687.faa"
    records = list(read_fasta(str(proteome)))[:40]
    fasta = root / "in.fasta"
    write_fasta([(r.id, r.sequence.rstrip("*")) for r in records], fasta)
    ref = root / "ref"
    ref.mkdir()
    embed = ["embed", "--model", str(model_dir), "--input", str(fasta), "--backend", "torch", "--pooling", "mean,cls",
             "--chunk-residues", "5000"]  # 3 parts
    assert main(["-q", *embed, "--output", str(ref / "e.parquet")]) == 0
    commands = {
        "index": ["index", "--embeddings", str(ref / "e.parquet")],
        "dedup": ["dedup", "--embeddings", str(ref / "e.parquet"), "--threshold", "0.5"],
        "cluster": ["cluster", "--embeddings", str(ref / "e.parquet"), "--k", "3"],
        "hash": ["hash", "--embeddings", str(ref / "e.parquet"), "--bits", "64"],
    }
    for name, args in commands.items():
        assert main(["-q", *args, "--output", str(ref / name)]) == 0
    return {"root": root, "fasta": fasta, "ref": ref, "embed": embed, "commands": commands}


# --- SIGKILL, then a re-run -----------------------------------------------------------------------------
# embed's os.replace calls: 1 run.json, 2.. the parts (3 of them), 5 the merged output.
@pytest.mark.parametrize(("kill_at", "when"), [(1, "before"), (2, "before"), (2, "after"), (5, "before"),
                                               (5, "after")])
def test_embed_killed_at_each_write_phase_resumes_to_the_same_file(work: dict, kill_at: int, when: str,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "e.parquet"
    code, err = killed(CLI.format(args=["-q", *work["embed"], "--output", str(out)]), kill_at, when)
    assert code == -9, err
    assert main(["-q", *work["embed"], "--output", str(out)]) == 0
    assert table(out).equals(table(work["ref"] / "e.parquet"))
    assert pq.read_schema(out).metadata == pq.read_schema(work["ref"] / "e.parquet").metadata
    assert listing(tmp_path) == ["e.parquet"]  # no .partial/, .tmp or .lock left


@pytest.mark.parametrize("command", ["index", "dedup", "cluster", "hash"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_search_commands_killed_while_writing_rerun_to_the_same_output(work: dict, command: str, when: str,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / command
    args = [*work["commands"][command], "--output", str(out)]
    code, err = killed(CLI.format(args=["-q", *args]), 1, when)
    assert code == -9, err
    assert main(["-q", *args]) == 0
    reference = work["ref"] / command
    if command == "index":
        assert listing(out) == listing(reference)
        assert (out / "ids.parquet").read_bytes() == (reference / "ids.parquet").read_bytes()
        assert (out / "index.faiss").read_bytes() == (reference / "index.faiss").read_bytes()
    else:
        assert table(out).equals(table(reference))
    assert listing(tmp_path) == [command]


CACHE = """
import sys
from protkit.data import filter_and_split
from protkit.data.readers import read_sources
from protkit.teacher import build_cache
from protkit.models.esmc import ESMCConfig, random_esmc
table, _ = filter_and_split(read_sources("fasta", [{fasta!r}]), min_length=10, max_length=300, test_fraction=0.3,
                            salt="s")
build_cache(random_esmc(ESMCConfig(d_model=64, n_heads=1, n_layers=1), seed=0), table, {out!r},
            weights_sha256="w", teacher_name="t", dataset="d", max_length=302, max_tokens_per_batch=4096,
            shard_size=10)
"""


@pytest.mark.parametrize(("kill_at", "when"), [(2, "before"), (3, "after")])
def test_teacher_cache_killed_mid_build_resumes_to_the_same_cache(work: dict, kill_at: int, when: str,
                                                                  tmp_path: Path) -> None:
    from protkit.teacher import load_pooled

    reference, out = tmp_path / "reference", tmp_path / "cache"
    assert killed(CACHE.format(fasta=str(work["fasta"]), out=str(reference)), 0, "none")[0] == 0
    code, err = killed(CACHE.format(fasta=str(work["fasta"]), out=str(out)), kill_at, when)
    assert code == -9, err
    assert killed(CACHE.format(fasta=str(work["fasta"]), out=str(out)), 0, "none")[0] == 0
    assert listing(out) == listing(reference) and listing(tmp_path) == ["cache", "reference"]
    ours, theirs = load_pooled(out), load_pooled(reference)
    assert ours.ids == theirs.ids and all((ours.vectors[p] == theirs.vectors[p]).all() for p in ours.vectors)


# --- races, lost state ----------------------------------------------------------------------------------
def test_second_writer_of_one_output_stops_at_once(work: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "e.parquet"
    first = killed(CLI.format(args=["-q", *work["embed"], "--output", str(out)]), 2, "pause", pause=6, wait=False)
    lock = tmp_path / ".e.parquet.lock"
    deadline = time.monotonic() + 60
    while not (tmp_path / "e.parquet.partial" / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lock.exists()
    assert main(["-q", *work["embed"], "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another protkit run is writing this output now" in err[0], err
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert table(out).equals(table(work["ref"] / "e.parquet")) and listing(tmp_path) == ["e.parquet"]


def test_parts_of_another_model_are_never_reused(work: dict, tmp_path: Path, model_dir: Path) -> None:
    """A kill leaves parts of model A; their run.json is lost; a run with model B must not reuse them."""
    import torch

    from protkit.models.prothash import ProtHash, ProtHashConfig

    other = tmp_path / "other-model"
    torch.manual_seed(1)
    ProtHash(ProtHashConfig(d_model=32, q_heads=4, kv_heads=2, n_layers=2, teacher_dim=64,
                            context_length=512)).save_pretrained(other)
    out = tmp_path / "out" / "e.parquet"
    assert killed(CLI.format(args=["-q", *work["embed"], "--output", str(out)]), 4, "after")[0] == -9
    (out.parent / "e.parquet.partial" / "run.json").unlink()  # as a failed or raced run can leave it
    args = [a if a != str(model_dir) else str(other) for a in work["embed"]]
    assert main(["-q", *args, "--output", str(out)]) == 0
    reference = tmp_path / "reference.parquet"
    assert main(["-q", *args, "--output", str(reference)]) == 0
    assert table(out).equals(table(reference))


# --- outputs that would destroy an input ----------------------------------------------------------------
def test_outputs_that_are_inputs_are_refused(work: dict, tmp_path: Path, capsys) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_bytes(work["fasta"].read_bytes())
    embeddings = tmp_path / "e.parquet"
    embeddings.write_bytes((work["ref"] / "e.parquet").read_bytes())
    (tmp_path / "link.parquet").symlink_to(embeddings)
    os.link(fasta, tmp_path / "hard.parquet")
    before = {p.name: p.read_bytes() for p in (fasta, embeddings)}
    cases = [
        [*work["embed"][:4], str(fasta), *work["embed"][5:], "--output", str(fasta)],
        [*work["embed"][:4], str(fasta), *work["embed"][5:], "--output", str(tmp_path / "hard.parquet")],
        [*work["embed"][:4], str(fasta), *work["embed"][5:], "--output", str(tmp_path / "x.parquet"),
         "--per-residue", str(tmp_path / "x.parquet")],
        [*work["embed"][:4], str(fasta), *work["embed"][5:], "--output", str(tmp_path)],
        ["index", "--embeddings", str(embeddings), "--output", str(embeddings)],
        ["dedup", "--embeddings", str(embeddings), "--output", str(tmp_path / "link.parquet")],
        ["hash", "--embeddings", str(embeddings), "--output", str(embeddings)],
        ["cluster", "--embeddings", str(embeddings), "--k", "2", "--output", str(embeddings)],
        ["search", "--index", str(work["ref"] / "index"), "--query", str(embeddings), "--output", str(embeddings)],
    ]
    names = sorted(p.name for p in tmp_path.iterdir())
    for args in cases:
        assert main(["-q", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("protkit: error: "), (args, err)
        assert "is the input" in err[0] or "two outputs" in err[0] or "is a directory" in err[0], err
    assert {p.name: p.read_bytes() for p in (fasta, embeddings)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # nothing written, no .partial/ left


def test_stale_temporary_files_of_an_output_are_removed(work: dict, tmp_path: Path) -> None:
    out = tmp_path / "e.parquet"
    (tmp_path / ".e.parquet.abc123.tmp").write_bytes(b"half a merge")
    (tmp_path / ".other.parquet.x.tmp").write_bytes(b"not ours")
    assert main(["-q", *work["embed"], "--output", str(out)]) == 0
    assert listing(tmp_path) == [".other.parquet.x.tmp", "e.parquet"]


# --- full disks and read-only file systems -----------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Path:
    directory.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)


def test_full_disk_ends_in_one_error_line_and_no_partial_output(work: dict, tmp_path: Path, capsys) -> None:
    with small_tmpfs(tmp_path / "small", "64k") as disk:
        out = disk / "e.parquet"
        code = main(["-q", *work["embed"], "--output", str(out), "--per-residue", str(disk / "r.parquet")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "no space left on the device" in err[0] and str(disk) in err[0], err
        left = listing(disk)
        if "e.parquet.partial" in left:  # finished parts stay only when the message says so
            assert "re-run the same command to resume" in err[0]
        assert [n for n in left if n != "e.parquet.partial"] == []


def test_read_only_file_system_ends_in_one_error_line(work: dict, tmp_path: Path, capsys) -> None:
    with small_tmpfs(tmp_path / "ro", "1m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for args in ([*work["embed"], "--output", str(disk / "e.parquet")],
                     [*work["commands"]["dedup"], "--output", str(disk / "d.parquet")]):
            assert main(["-q", *args]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "read-only" in err[0] and str(disk) in err[0], err
        assert listing(disk) == []
