"""protkit.load(...).embed(...): the vectors ``protkit embed`` writes, in input order, for every backend;
bad input named by position and id; ``import protkit`` without torch; the README and docstring examples."""

from __future__ import annotations

import doctest
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import protkit
from protkit.cli.main import main
from protkit.embed.embedder import EmbedError
from protkit.io.columns import column_vectors
from protkit.io.metadata import read_protkit_metadata
from protkit.sequences.fasta import write_fasta

REPO = Path(__file__).resolve().parents[1]
AMINO = "ACDEFGHIKLMNPQRSTVWY"
POOLINGS = ["mean", "cls", "max"]
# (backend, int8) -> what protkit embed records: the four CPU paths of the tiny student
PATHS = {("torch", False): ("torch", None), ("torch", True): ("torch", "int8_dynamic"),
         ("onnxruntime", False): ("onnxruntime", None), ("onnxruntime", True): ("onnxruntime", "onnx_int8_dynamic")}


@pytest.fixture(scope="module")
def records() -> list[tuple[str, str]]:
    """40 proteins of 5..400 residues in no length order, an exact duplicate, a lower-case twin with a stop
    codon, and one longer than the tiny model's 512 tokens (truncated)."""
    rng = random.Random(7)
    recs = [(f"p{i:02d}", "".join(rng.choice(AMINO) for _ in range(rng.randint(5, 400)))) for i in range(40)]
    recs[9] = ("dup_of_p02", recs[2][1])
    recs[17] = ("twin_of_p05", recs[5][1].lower() + "*")
    recs[30] = ("long", "".join(rng.choice(AMINO) for _ in range(700)))
    return recs


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory, records: list[tuple[str, str]]) -> Path:
    path = tmp_path_factory.mktemp("api-fasta") / "proteins.fasta"
    write_fasta(records, path)
    return path


def cli_embed(model: Path, fasta: Path, out: Path, *options: str) -> Path:
    """``protkit embed`` itself (the command line's entry point)."""
    assert main(["-q", "embed", "--model", str(model), "--input", str(fasta), "--output", str(out),
                 "--device", "cpu", *options]) == 0
    return out


def parquet_vectors(path: Path, name: str) -> np.ndarray:
    return column_vectors(pq.read_table(path).column(name))  # (N, D) float32


@pytest.mark.parametrize(("backend", "int8"), list(PATHS))
def test_embed_equals_what_protkit_embed_writes(model_dir: Path, fasta: Path, records, tmp_path: Path,
                                                backend: str, int8: bool) -> None:
    out = cli_embed(model_dir, fasta, tmp_path / "cli.parquet", "--backend", backend,
                    "--pooling", ",".join(POOLINGS), *(["--int8"] if int8 else []))
    model = protkit.load(model_dir, backend=backend, int8=int8, device="cpu")
    from_list = model.embed([sequence for _, sequence in records], pooling=POOLINGS)
    from_dict = model.embed(dict(records), pooling=POOLINGS)
    from_file = model.embed(fasta, pooling=POOLINGS)
    meta = read_protkit_metadata(out)
    assert (meta["backend"], meta["quantization"]) == PATHS[backend, int8]
    assert (model.metadata["backend"], model.metadata["quantization"]) == PATHS[backend, int8]
    for name in POOLINGS:
        expected = parquet_vectors(out, name)  # (40, 64)
        assert expected.shape == (len(records), model.dim)
        for got in (from_list[name], from_dict[name], from_file[name]):
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)  # the same code path: bit for bit


def test_default_options_are_protkit_embeds(model_dir: Path, fasta: Path, records, tmp_path: Path) -> None:
    """No options on either side: the same backend (onnxruntime on a CPU), pooling (mean) and batches."""
    out = cli_embed(model_dir, fasta, tmp_path / "default.parquet")
    model = protkit.load(model_dir)
    vectors = model.embed([sequence for _, sequence in records])
    assert read_protkit_metadata(out)["backend"] == model.metadata["backend"] == "onnxruntime"
    assert read_protkit_metadata(out)["poolings"] == ["mean"]
    np.testing.assert_array_equal(vectors, parquet_vectors(out, "mean"))
    table = model.embed_table(fasta)
    expected = pq.read_table(out).to_pandas()
    assert list(table.columns) == ["id", "length", "truncated", "mean"]
    assert table["id"].tolist() == expected["id"].tolist() == [rid for rid, _ in records]
    assert table["length"].tolist() == expected["length"].tolist()
    assert table["truncated"].tolist() == expected["truncated"].tolist() == [rid == "long" for rid, _ in records]
    np.testing.assert_array_equal(np.stack(table["mean"].to_list()), vectors)


def test_batch_tokens_reach_the_batches(model_dir: Path, fasta: Path, records, tmp_path: Path) -> None:
    """onnxruntime's int8 quantizes activations per batch, so only the command's batches give its vectors."""
    out = cli_embed(model_dir, fasta, tmp_path / "small-batches.parquet", "--int8", "--max-tokens", "256")
    expected = parquet_vectors(out, "mean")
    sequences = [sequence for _, sequence in records]
    np.testing.assert_array_equal(protkit.load(model_dir, int8=True, max_tokens=256).embed(sequences), expected)
    default_batches = protkit.load(model_dir, int8=True)
    np.testing.assert_array_equal(default_batches.embed(sequences, batch_tokens=256), expected)
    assert not np.array_equal(default_batches.embed(sequences), expected)  # the check can fail


def test_rows_follow_the_input_order(model_dir: Path, records) -> None:
    model = protkit.load(model_dir, backend="torch", device="cpu")
    sequences = [sequence for _, sequence in records]
    forward, backward = model.embed(sequences), model.embed(sequences[::-1])
    assert np.abs(forward - backward[::-1]).max() <= 1e-5  # other batches, same vectors up to rounding
    assert np.abs(forward[1] - forward[0]).max() > 1e-3  # distinct proteins, distinct rows: the check can fail
    np.testing.assert_array_equal(forward[9], forward[2])  # the duplicate
    assert np.abs(forward[17] - forward[5]).max() <= 1e-6  # lower case and a stop codon: cleaned first
    table = model.embed_table({"b": sequences[1], "a": sequences[0]}, pooling=["cls", "std"])
    assert table["id"].tolist() == ["b", "a"] and list(table.columns)[3:] == ["cls", "std"]


def test_one_pooling_gives_an_array_several_a_dict(model_dir: Path) -> None:
    model = protkit.load(model_dir, backend="torch", device="cpu")
    sequences = ["MKTAYIAKQRQISFVKSHFSRQ", "MSEQNNTEMTFQIQRIYTKDI"]
    one = model.embed(sequences, pooling="max")
    several = model.embed(sequences, pooling=("max", "std"))
    side_by_side = model.embed(sequences, pooling="mean+std")
    assert isinstance(one, np.ndarray) and one.shape == (2, model.dim)
    assert sorted(several) == ["max", "std"] and side_by_side.shape == (2, 2 * model.dim)
    np.testing.assert_array_equal(several["max"], one)
    np.testing.assert_array_equal(side_by_side[:, model.dim :], several["std"])
    np.testing.assert_array_equal(side_by_side[:, : model.dim], model.embed(sequences))
    assert model.embed([]).shape == (0, model.dim)
    assert set(model.embed({}, pooling=["cls", "max"])) == {"cls", "max"}


@pytest.mark.parametrize(("sequences", "options", "message"), [
    (["MKTAYIAKQ", "MKB1Z"], {}, r"sequence 1: character '1' at residue 4 is not an amino acid"),
    ({"P1": "MKT", "P2": "MK*TA"}, {}, r"sequence 1 \(id 'P2'\): internal stop '\*' at residue 3"),
    (["MKT", 42], {}, r"sequence 1: expected a string of amino-acid letters, got int"),
    (["MKT", "*"], {}, r"sequence 1: empty sequence"),
    (["MKT", "ACGTACGTACGTACGTACGTAC"], {}, r"sequence 1: all 22 letters are A/C/G/T/U/N"),
    (["M" * 20, "M" * 30], {"overlength": "error", "max_length": 25}, r"sequence 1: 30 residues \(32 tokens"),
    (["MJ1", "MK1"], {"alphabet": "reject"}, r"no sequence left to embed \(2 rejected\)"),
])
def test_bad_sequences_are_named(model_dir: Path, sequences, options: dict, message: str) -> None:
    model = protkit.load(model_dir, backend="torch", device="cpu")
    with pytest.raises(protkit.SequenceError, match=message) as caught:
        model.embed(sequences, **options)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, EmbedError)


def test_bad_arguments_say_what_to_change(model_dir: Path, tmp_path: Path) -> None:
    model = protkit.load(model_dir, backend="torch", device="cpu")
    with pytest.raises(EmbedError, match=r"is not a FASTA file; to embed one sequence pass a list"):
        model.embed("MKTAYIAKQRQ")
    with pytest.raises(EmbedError, match=r"pooling must be one of cls, mean, max"):
        model.embed(["MKT"], pooling="average")
    with pytest.raises(EmbedError, match=r"a concatenated pooling \(\+\) comes alone"):
        model.embed(["MKT"], pooling=["max", "mean+std"])
    with pytest.raises(EmbedError, match=r"sequences must be a list or tuple of strings"):
        model.embed({"MKT"})
    with pytest.raises(EmbedError, match=r"onnxruntime backend gives cls, mean, max poolings, not std"):
        protkit.load(model_dir, backend="onnxruntime").embed(["MKT"], pooling="std")
    with pytest.raises(FileNotFoundError, match=f"model '{tmp_path / 'absent'}': no such file or directory"):
        protkit.load(tmp_path / "absent")


def test_reject_leaves_sequences_out_and_keeps_the_ids(model_dir: Path, caplog) -> None:
    model = protkit.load(model_dir, backend="torch", device="cpu")
    table = model.embed_table({"a": "MKTAYIAKQ", "bad": "MK1", "c": "mseqnn*"}, alphabet="reject")
    assert table["id"].tolist() == ["a", "c"] and table["length"].tolist() == [9, 6]
    assert "sequence 1 (id 'bad'): character '1' at residue 3" in caplog.text
    dropped = model.embed_table(["M" * 10, "M" * 30, "M" * 5], overlength="drop", max_length=20)
    assert dropped["id"].tolist() == [0, 2]


def test_a_torch_model_is_loaded_once_for_every_pooling(model_dir: Path) -> None:
    """protkit embed's backend choice depends on the poolings (std needs torch); a torch model serves all."""
    auto, forced = protkit.load(model_dir, device="cpu"), protkit.load(model_dir, backend="torch", device="cpu")
    for model in (auto, forced):
        model.embed(["MKTAYIAKQ"], pooling=["mean", "std"])
        model.embed(["MKTAYIAKQ"], pooling="cls")
    assert [e.backend for e in auto.loaded.values()] == ["onnxruntime", "torch", "onnxruntime"]
    assert len({id(e) for e in forced.loaded.values()}) == 1 and forced.embedder.backend == "torch"


def test_import_protkit_does_not_load_torch() -> None:
    probe = ("import sys, protkit; assert 'torch' not in sys.modules, 'torch at import';"
             "assert 'load' in dir(protkit); protkit.load; assert 'torch' in sys.modules;"
             "print(protkit.load.__module__)")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and shown.stdout.split() == ["protkit.api"], shown.stderr
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        protkit.lod  # noqa: B018


@pytest.fixture
def example_dir(model_dir: Path, fasta: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory where the examples' paths exist: the tiny student as
    ``results/models/V2-384-Tiny`` and ``proteome.fasta``."""
    shutil.copytree(model_dir, tmp_path / "results" / "models" / "V2-384-Tiny")
    shutil.copy(fasta, tmp_path / "proteome.fasta")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_readme_example_runs(example_dir: Path, records) -> None:
    blocks = re.findall(r"```python\n(.*?)```", readme_section("Python API"), flags=re.S)
    assert blocks, "README's Python API section has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md (Python API)", "exec"), namespace)  # noqa: S102
    dim = namespace["model"].dim
    assert namespace["vectors"].shape == (2, dim) and namespace["vectors"].dtype == np.float32
    assert namespace["both"]["cls"].shape == (2, dim)
    table = namespace["table"]
    assert table["id"].tolist() == [rid for rid, _ in records] and {"mean", "max"} <= set(table.columns)


def test_the_docstring_example_runs(example_dir: Path) -> None:
    import protkit.api

    result = doctest.testmod(protkit.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0
