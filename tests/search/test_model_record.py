"""Portable indexes (protkit.search.model_record): an index records its model by fingerprint and by
path, absolute and relative to the index, so a FASTA query finds the model from another working
directory and after the index and the model moved together; a moved model or another model is an
error naming the fingerprints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from protkit.cli.main import main
from protkit.io.digests import file_sha256
from protkit.models.names import WEIGHTS_FILE

PROTKIT = Path(sys.executable).with_name("protkit")  # the console script, run in a fresh process


def protkit(cwd: Path, *argv: str | Path) -> subprocess.CompletedProcess:
    """``protkit ARGV`` run in ``cwd``; asserts exit status 0."""
    result = subprocess.run([str(PROTKIT), *map(str, argv)], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def error_line(capsys: pytest.CaptureFixture, *argv: str | Path) -> str:
    assert main([str(a) for a in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("protkit: error: "), lines
    return lines[0]


def write_proteins(path: Path, records: list) -> None:
    path.write_text("".join(f">{r.description}\n{r.sequence}\n" for r in records))


@pytest.fixture(scope="module")
def proteins(shared_records) -> list:
    """20 real DeepLoc proteins of 50-300 residues (their headers carry descriptions)."""
    return [r for r in shared_records if 50 <= len(r.sequence) <= 300][:20]


def test_index_answers_fasta_queries_from_another_directory_and_after_moving(
    proteins: list, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    built, elsewhere = tmp_path / "A", tmp_path / "B"
    shutil.copytree(model_dir, built / "models" / "tiny")
    elsewhere.mkdir()
    write_proteins(built / "db.fasta", proteins)
    write_proteins(elsewhere / "q.fasta", proteins[:3])
    protkit(built, "-q", "embed", "--model", "models/tiny", "--input", "db.fasta", "--output", "db.parquet")
    protkit(built, "-q", "index", "--embeddings", "db.parquet", "--output", "db.index")
    record = json.loads((built / "db.index" / "index.json").read_text())["model"]
    fingerprint = file_sha256(model_dir / WEIGHTS_FILE)
    assert record["fingerprint"] == fingerprint and record["model"] == "models/tiny"
    assert record["path"] == str((built / "models" / "tiny").resolve()) and record["relative_path"] == "../models/tiny"

    def search_from_elsewhere(index: Path, output: str, *extra: str | Path) -> pd.DataFrame:
        protkit(elsewhere, "-q", "search", "--index", index, "--query", "q.fasta", "--k", "3", "--keep-self",
                "--output", output, *extra)
        return pd.read_parquet(elsewhere / output)

    hits = search_from_elsewhere(Path("../A/db.index"), "from_b.parquet")  # the index's path relative to B
    top = hits[hits["rank"] == 1]
    assert top["hit_id"].tolist() == [r.id for r in proteins[:3]] and (top["score"] > 0.9999).all()

    moved = tmp_path / "C"
    shutil.move(built, moved)  # the index and the model together: only the relative path still holds
    assert hits.equals(search_from_elsewhere(moved / "db.index", "moved.parquet"))

    # the model moved alone: an error naming the fingerprint and asking for --model, no output
    shutil.move(moved / "models", tmp_path / "models")
    monkeypatch.chdir(elsewhere)
    line = error_line(capsys, "search", "--index", moved / "db.index", "--query", "q.fasta", "--output", "lost.parquet")
    assert fingerprint[:12] in line and str(moved / "models" / "tiny") in line and "--model" in line
    assert not (elsewhere / "lost.parquet").exists()
    assert main(["-q", "search", "--index", str(moved / "db.index"), "--query", "q.fasta", "--k", "3", "--keep-self",
                 "--model", str(tmp_path / "models" / "tiny"), "--output", "given.parquet"]) == 0
    assert hits.equals(pd.read_parquet(elsewhere / "given.parquet"))


def test_a_model_with_another_fingerprint_is_refused_naming_both(
    proteins: list, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from tiny_models import TINY_STUDENT

    from protkit.models.prothash.config import ProtHashConfig
    from protkit.models.prothash.model import ProtHash

    shutil.copytree(model_dir, tmp_path / "models" / "tiny")
    write_proteins(tmp_path / "db.fasta", proteins)
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "embed", "--model", "models/tiny", "--input", "db.fasta", "--output", "db.parquet"]) == 0
    assert main(["-q", "index", "--embeddings", "db.parquet", "--output", "db.index"]) == 0
    torch.manual_seed(11)
    ProtHash(ProtHashConfig(**TINY_STUDENT)).save_pretrained(tmp_path / "other")
    ours, theirs = file_sha256(model_dir / WEIGHTS_FILE), file_sha256(tmp_path / "other" / WEIGHTS_FILE)
    line = error_line(capsys, "search", "--index", "db.index", "--query", "db.fasta", "--model", "other",
                      "--output", "h.parquet")
    assert ours[:12] in line and theirs[:12] in line and "--model other" in line
    # another model now at the recorded relative path, the right one at the recorded absolute path
    # (as after copying a tree and retraining in the copy): the fingerprint picks the right one
    shutil.copytree(model_dir, tmp_path / "kept")
    record = json.loads((tmp_path / "db.index" / "index.json").read_text())["model"]
    shutil.rmtree(tmp_path / "models" / "tiny")
    shutil.copytree(tmp_path / "other", tmp_path / "models" / "tiny")
    meta = json.loads((tmp_path / "db.index" / "index.json").read_text())
    meta["model"]["path"] = str(tmp_path / "kept")
    (tmp_path / "db.index" / "index.json").write_text(json.dumps(meta))
    assert main(["-q", "search", "--index", "db.index", "--query", "db.fasta", "--output", "h.parquet"]) == 0
    assert record["relative_path"] == "../models/tiny"
    meta["model"]["path"] = str(tmp_path / "gone")
    (tmp_path / "db.index" / "index.json").write_text(json.dumps(meta))
    line = error_line(capsys, "search", "--index", "db.index", "--query", "db.fasta", "--output", "h2.parquet")
    assert ours[:12] in line and theirs[:12] in line and str(tmp_path / "gone") in line
