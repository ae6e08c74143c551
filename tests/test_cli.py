"""``protkit embed``: same output as protkit.embed.embed_fasta, flags, and user errors (exit 2)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import protkit
from protkit.cli import main
from protkit.embed import embed_fasta, load_model, read_metadata
from protkit.fasta import write_fasta



@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(5)
    lengths = [rng.randint(10, 200) for _ in range(12)]
    recs = [(f"q{i}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(n))) for i, n in enumerate(lengths)]
    path = tmp_path_factory.mktemp("fasta") / "in.fasta"
    write_fasta(recs, path)
    return path


def column(path: Path, name: str) -> np.ndarray:
    return np.stack(pq.read_table(path).column(name).to_numpy(zero_copy_only=False))


def test_cli_output_equals_embed_fasta(model_dir, fasta, tmp_path):
    out = tmp_path / "cli.parquet"
    argv = ["embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(out),
            "--pooling", "mean,cls", "--max-tokens", "700", "--device", "cpu"]
    assert main(argv) == 0
    ref = embed_fasta(load_model(model_dir), fasta, tmp_path / "lib.parquet", poolings=("mean", "cls"),
                      max_tokens=700, device="cpu")
    assert pq.read_table(out).column_names == ["id", "length", "truncated", "mean", "cls"]
    assert pq.read_table(out).column("id").to_pylist() == [f"q{i}" for i in range(12)]
    for name in ("mean", "cls"):
        np.testing.assert_array_equal(column(out, name), column(ref, name))
    assert read_metadata(out) == read_metadata(ref)


def test_cli_int8_fp16_overlength(model_dir, fasta, tmp_path):
    out = tmp_path / "q.parquet"
    assert main(["-q", "embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(out),
                 "--int8", "--fp16", "--max-length", "50", "--overlength", "drop"]) == 0
    meta = read_metadata(out)
    assert (meta["int8"], meta["quantization"], meta["store_dtype"]) == (True, "int8_dynamic", "fp16")
    assert column(out, "mean").dtype == np.float16
    kept = pq.read_table(out).column("length").to_pylist()
    assert kept and max(kept) <= 48 and len(kept) + len(meta["dropped"]) == 12


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"protkit {protkit.__version__}"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_input", "input FASTA .*missing.fasta: no such file"),
        ("bad_fasta", r"bad\.fasta line 1: sequence data before the first '>' header"),
        ("missing_model", "no such directory"),
        ("overlength_error", r"in\.fasta line \d+, id q\d+: \d+ residues"),
    ],
)
def test_user_errors_exit_2_without_traceback(case, message, model_dir, fasta, tmp_path, capsys):
    bad = tmp_path / "bad.fasta"
    bad.write_text("MKV\n>x\nMKV\n")
    args = {
        "missing_input": ["--model", str(model_dir), "--input", str(tmp_path / "missing.fasta")],
        "bad_fasta": ["--model", str(model_dir), "--input", str(bad)],
        "missing_model": ["--model", str(tmp_path / "nope"), "--input", str(fasta)],
        "overlength_error": ["--model", str(model_dir), "--input", str(fasta), "--max-length", "20",
                             "--overlength", "error"],
    }[case]
    assert main(["embed", *args, "--output", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("protkit: error: ") and "Traceback" not in err
    assert __import__("re").search(message, err)
    assert not (tmp_path / "o.parquet").exists()


def test_bad_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "--model", "m", "--input", "x", "--output", "y", "--pooling", "tokens"])
    assert exit_info.value.code == 2
    assert "choose one or more of mean, cls" in capsys.readouterr().err


def test_console_script_in_a_fresh_process(model_dir, fasta, tmp_path):
    script = Path(sys.executable).with_name("protkit")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable} (run make install)")
    out = tmp_path / "s.parquet"
    done = subprocess.run([str(script), "embed", "--model", str(model_dir), "--input", str(fasta),
                           "--output", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows == 12
    missing = subprocess.run([str(script), "embed", "--model", str(model_dir), "--input", "nothere.fa",
                              "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
