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
from protkit.cli.main import main
from protkit.embed.loading import load_embedder
from protkit.embed.run import embed_fasta
from protkit.io.metadata import read_protkit_metadata
from protkit.sequences.fasta import write_fasta


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
            "--pooling", "mean,cls", "--max-tokens", "700", "--device", "cpu", "--backend", "torch"]
    assert main(argv) == 0
    ref = embed_fasta(load_embedder(model_dir, backend="torch", device="cpu"), fasta, tmp_path / "lib.parquet",
                      poolings=("mean", "cls"), max_tokens=700)
    assert pq.read_table(out).column_names == ["id", "length", "truncated", "mean", "cls"]
    assert pq.read_table(out).column("id").to_pylist() == [f"q{i}" for i in range(12)]
    for name in ("mean", "cls"):
        np.testing.assert_array_equal(column(out, name), column(ref, name))
    assert read_protkit_metadata(out) == read_protkit_metadata(ref)


def test_cli_int8_fp16_overlength(model_dir, fasta, tmp_path):
    out = tmp_path / "q.parquet"
    assert main(["-q", "embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(out),
                 "--int8", "--fp16", "--max-length", "50", "--overlength", "drop", "--backend", "torch"]) == 0
    meta = read_protkit_metadata(out)
    assert (meta["int8"], meta["quantization"], meta["store_dtype"]) == (True, "int8_dynamic", "fp16")
    assert column(out, "mean").dtype == np.float16
    kept = pq.read_table(out).column("length").to_pylist()
    assert kept and max(kept) <= 48 and len(kept) + len(meta["dropped"]) == 12


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.splitlines()[0] == f"protkit {protkit.__version__}"  # then the CPU line


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_input", "input FASTA .*missing.fasta: no such file"),
        ("bad_fasta", r"bad\.fasta line 1: sequence data before the first '>' header"),
        ("missing_model", "no such file or directory"),
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
    assert "choose one or more of cls, mean, max" in capsys.readouterr().err


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


def _bad_input(kind: str, model_dir: Path, fasta: Path, tmp: Path) -> tuple[list[str], str]:
    """(``--model``/``--input`` arguments, expected message) for one kind of bad input."""
    import gzip
    import shutil

    def student_copy(name: str) -> Path:
        copy = tmp / name
        shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("int8"))
        return copy

    if kind == "binary_fasta":
        path = tmp / "image.fasta"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        return ["--model", str(model_dir), "--input", str(path)], r"image\.fasta line 1: (binary data|not UTF-8)"
    if kind == "latin1_fasta":
        path = tmp / "latin1.fasta"
        path.write_bytes(b">p1 caf\xe9\nMKV\n")
        return ["--model", str(model_dir), "--input", str(path)], r"latin1\.fasta line 1: not UTF-8 text"
    if kind == "truncated_gz":
        path = tmp / "cut.fasta.gz"
        path.write_bytes(gzip.compress(fasta.read_bytes())[:-40])
        return ["--model", str(model_dir), "--input", str(path)], r"cut\.fasta\.gz: the gzip data end early"
    if kind == "corrupt_safetensors":
        copy = student_copy("corrupt")
        weights = copy / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:200])
        return ["--model", str(copy), "--input", str(fasta)], r"corrupt/model\.safetensors"
    if kind == "malformed_config":
        copy = student_copy("malformed")
        (copy / "config.json").write_text('{"d_model": 32,\n  "q_heads": 4,,\n}')
        return ["--model", str(copy), "--input", str(fasta)], r"malformed/config\.json.*line 2"
    if kind == "unknown_format":
        copy = student_copy("foreign")
        (copy / "config.json").write_text('{"hidden_size": 32, "num_hidden_layers": 2}')
        return ["--model", str(copy), "--input", str(fasta)], r"foreign/config\.json.*hidden_size"
    if kind == "alphabet_error":
        path = tmp / "letters.fasta"
        path.write_text(">ok\nMKVLAAGG\n>odd\nMKJJ12\n")
        return (["--model", str(model_dir), "--input", str(path), "--alphabet", "error"],
                r"letters\.fasta line 3, id odd: letter 'J' at residue 3 is not an amino acid")
    if kind == "nucleotides":
        path = tmp / "genes.fasta"
        write_fasta([("g1", "ATGGCGTTAGCCAGT" * 20), ("g2", "ATGNNNACGUACGTT" * 20)], path)
        return ["--model", str(model_dir), "--input", str(path)], r"genes\.fasta: looks like DNA/RNA, not protein"
    raise AssertionError(kind)


BAD_INPUTS = ["binary_fasta", "latin1_fasta", "truncated_gz", "corrupt_safetensors", "malformed_config",
              "unknown_format", "alphabet_error", "nucleotides"]


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_exit_2_one_line_no_output(kind, model_dir, fasta, tmp_path, capsys):
    args, message = _bad_input(kind, model_dir, fasta, tmp_path)
    out = tmp_path / "out" / "o.parquet"
    assert main(["-q", "embed", *args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("protkit: error: "), err
    assert __import__("re").search(message, lines[-1]), lines[-1]
    assert not out.exists() and not (tmp_path / "out").exists()  # no output, no partial directory


def test_default_alphabet_policy_skips_and_lists_the_record(model_dir, tmp_path):
    path = tmp_path / "letters.fasta"
    path.write_text(">ok\nMKVLAAGG\n>odd\nMKJJ12\n")
    out = tmp_path / "o.parquet"
    assert main(["-q", "embed", "--model", str(model_dir), "--input", str(path), "--output", str(out)]) == 0
    assert pq.read_table(out).column("id").to_pylist() == ["ok"]
    assert read_protkit_metadata(out)["rejected"] == [{"id": "odd", "line": 3, "reason": "invalid_character"}]
