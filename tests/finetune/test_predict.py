"""``protkit predict``: FASTA order and ids kept, the bad-input rules of ``protkit embed``, outputs
never over inputs, and what is not a fine-tuned model refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from protkit.cli.main import main
from protkit.io.metadata import read_protkit_metadata

RECORDS = [("short", "MKVLA"), ("bad", "MKJLLA"), ("long", "MKVLAGILLA" * 12), ("stop", "MKKEEDDSTR*"),
           ("mid", "MSTNPKPQRKTKRNTNRRPQDVKFPGG")]


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text("".join(f">{rid} some description\n{seq}\n" for rid, seq in RECORDS))
    return path


def test_predictions_keep_fasta_order_and_list_rejected_records(finetuned_dir: Path, fasta: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    assert main(["-q", "predict", "--model", str(finetuned_dir), "--input", str(fasta), "--output", str(out),
                 "--max-length", "40", "--batch-tokens", "64"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "length", "truncated", "prediction", "probabilities"]
    assert table.column("id").to_pylist() == ["short", "long", "stop", "mid"]
    assert table.column("length").to_pylist() == [5, 120, 10, 27]
    assert table.column("truncated").to_pylist() == [False, True, False, False]
    assert set(table.column("prediction").to_pylist()) <= {"M", "S"}
    np.testing.assert_allclose(np.stack(table.column("probabilities").to_pylist()).sum(axis=1), 1.0, rtol=1e-6)
    meta = read_protkit_metadata(out)
    assert meta["rejected"] == [{"id": "bad", "line": 3, "reason": "invalid_character"}]
    assert (meta["task"], meta["labels"]) == ("classification", ["M", "S"])
    assert (meta["n_records"], meta["max_length"]) == (5, 40)
    alone = tmp_path / "alone.parquet"  # a protein alone gets what it gets in a batch
    (tmp_path / "one.fasta").write_text(">long\n" + RECORDS[2][1] + "\n")
    assert main(["-q", "predict", "--model", str(finetuned_dir), "--input", str(tmp_path / "one.fasta"), "--output",
                 str(alone), "--max-length", "40"]) == 0
    np.testing.assert_allclose(pq.read_table(alone).column("probabilities").to_pylist()[0],
                               table.column("probabilities").to_pylist()[1], rtol=1e-5)


@pytest.mark.parametrize(("case", "message"), [
    ("output_is_input", r"in\.fasta: this output is the input"),
    ("alphabet_error", r"in\.fasta line 3, id bad: letter 'J' at residue 3 is not an amino acid"),
    ("overlength_error", r"in\.fasta line 5, id long: 120 residues"),
    ("dna", r"looks like DNA/RNA"),
    ("not_finetuned", r"not a model with a task head; fine-tune it first"),
    ("missing_input", r"input FASTA .*missing\.fasta: no such file"),
])
def test_bad_input_exits_2_with_one_line(case: str, message: str, finetuned_dir: Path, model_dir: Path, fasta: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = {"--model": str(finetuned_dir), "--input": str(fasta), "--output": str(tmp_path / "out.parquet")}
    extra: list[str] = []
    if case == "output_is_input":
        args["--output"] = str(fasta)
    elif case == "alphabet_error":
        extra = ["--alphabet", "error"]
    elif case == "overlength_error":
        extra = ["--overlength", "error", "--max-length", "50"]
    elif case == "dna":
        fasta.write_text("".join(f">n{i}\n{'ACGTTGCA' * 20}\n" for i in range(4)))
    elif case == "not_finetuned":
        args["--model"] = str(model_dir)
    elif case == "missing_input":
        args["--input"] = str(tmp_path / "missing.fasta")
    assert main(["predict", *[x for pair in args.items() for x in pair], *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("protkit: error:") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "out.parquet").exists()
