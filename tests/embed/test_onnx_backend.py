"""The onnxruntime backend of ``protkit embed`` and ``protkit export --format onnx``: the CPU default
gives torch's vectors, int8 keeps cosine >= 0.999, exports run as models, refusals exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from protkit.cli.main import main
from protkit.embed.loading import choose_path, load_embedder
from protkit.io.metadata import read_protkit_metadata
from protkit.onnx.session import read_onnx_metadata
from protkit.sequences.fasta import write_fasta

N_PROTEINS = 40


@pytest.fixture(scope="module")
def fasta(shared_records, tmp_path_factory) -> Path:
    """Real proteins of varied length (<= 500 residues), in a fixed order that is not sorted."""
    picked = [r for r in shared_records if len(r.sequence) <= 500][: N_PROTEINS]
    path = tmp_path_factory.mktemp("onnx-fasta") / "proteins.fasta"
    write_fasta([(r.id, r.sequence) for r in picked], path)
    return path


def embed(model: Path, fasta: Path, out: Path, *extra: str) -> Path:
    argv = ["-q", "embed", "--model", str(model), "--input", str(fasta), "--output", str(out), "--device", "cpu"]
    assert main([*argv, "--pooling", "mean,cls,max", "--max-tokens", "2000", *extra]) == 0
    return out


def vectors(path: Path, name: str) -> np.ndarray:
    return np.stack(pq.read_table(path).column(name).to_numpy(zero_copy_only=False))


def rel_l2(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)  # (N,)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))  # (N,)


@pytest.fixture(scope="module")
def torch_run(model_dir, fasta, tmp_path_factory) -> Path:
    return embed(model_dir, fasta, tmp_path_factory.mktemp("torch") / "t.parquet", "--backend", "torch")


def test_cpu_default_is_onnxruntime_with_torch_vectors(model_dir, fasta, torch_run, tmp_path, protkit_cache) -> None:
    out = embed(model_dir, fasta, tmp_path / "auto.parquet")
    meta, ref = read_protkit_metadata(out), read_protkit_metadata(torch_run)
    assert (meta["backend"], ref["backend"]) == ("onnxruntime", "torch")
    assert meta["model_fingerprint"] == ref["model_fingerprint"] and meta["quantization"] is None
    assert pq.read_table(out).column("id").to_pylist() == pq.read_table(torch_run).column("id").to_pylist()
    for name in ("mean", "cls", "max"):
        assert rel_l2(vectors(out, name), vectors(torch_run, name)).max() <= 1e-4, name
    cached = sorted(p.name for p in (protkit_cache / "onnx").glob("*.onnx"))
    assert any(name.endswith(".onnx") and "-fp32-" in name for name in cached)
    # a second run loads the cached export instead of exporting again
    mtimes = {p: p.stat().st_mtime_ns for p in (protkit_cache / "onnx").glob("*-fp32-*.onnx")}
    embed(model_dir, fasta, tmp_path / "again.parquet")
    assert {p: p.stat().st_mtime_ns for p in (protkit_cache / "onnx").glob("*-fp32-*.onnx")} == mtimes
    np.testing.assert_array_equal(vectors(tmp_path / "again.parquet", "mean"), vectors(out, "mean"))


def test_int8_on_the_cpu_keeps_cosine(model_dir, fasta, torch_run, tmp_path) -> None:
    out = embed(model_dir, fasta, tmp_path / "int8.parquet", "--int8")
    meta = read_protkit_metadata(out)
    assert (meta["backend"], meta["quantization"], meta["int8"]) == ("onnxruntime", "onnx_int8_dynamic", True)
    for name in ("mean", "cls"):
        cos = cosine(vectors(out, name), vectors(torch_run, name))
        assert cos.min() >= 0.999, (name, cos.min())


def test_exported_onnx_runs_as_a_model(model_dir, fasta, torch_run, tmp_path) -> None:
    onnx = tmp_path / "student.onnx"
    assert main(["-q", "export", "--model", str(model_dir), "--format", "onnx", "--output", str(onnx)]) == 0
    meta = read_onnx_metadata(onnx)
    assert meta["precision"] == "fp32" and meta["weights_sha256"] == read_protkit_metadata(torch_run)["model_fingerprint"]
    out = embed(onnx, fasta, tmp_path / "from-file.parquet")
    assert read_protkit_metadata(out)["backend"] == "onnxruntime"
    for name in ("mean", "cls", "max"):
        assert rel_l2(vectors(out, name), vectors(torch_run, name)).max() <= 1e-4, name
    int8 = tmp_path / "student-int8.onnx"
    assert main(["-q", "export", "--model", str(model_dir), "--format", "onnx", "--int8", "--output", str(int8)]) == 0
    assert read_onnx_metadata(int8)["precision"] == "int8_dynamic"
    out8 = embed(int8, fasta, tmp_path / "from-int8.parquet")
    assert cosine(vectors(out8, "mean"), vectors(torch_run, "mean")).min() >= 0.999


def test_the_export_holds_only_the_poolings_asked_for(model_dir, protkit_cache) -> None:
    """onnxruntime runs every node of a graph: a mean-only run must not pay for max."""
    mean_only = load_embedder(model_dir, device="cpu", poolings=["mean"])
    assert mean_only.backend == "onnxruntime" and mean_only.poolings == ("mean",)
    assert read_onnx_metadata(mean_only.extra["onnx_file"])["outputs"] == ["mean"]
    both = load_embedder(model_dir, device="cpu", poolings=["max", "cls"])
    assert both.poolings == ("cls", "max") and both.extra["onnx_file"] != mean_only.extra["onnx_file"]
    assert load_embedder(model_dir, device="cpu").poolings == ("cls", "mean", "max")


def test_per_residue_and_low_precision_choose_torch(model_dir) -> None:
    import torch

    def backend(device: str = "cpu", precision: str = "fp32", per_residue: bool = False, fp32_student: bool = True):
        return choose_path("auto", precision, torch.device(device), False, per_residue, fp32_student)[0]

    assert backend() == "onnxruntime" and backend(precision="auto") == "onnxruntime"
    assert backend(per_residue=True) == "torch"
    assert backend(precision="bf16") == "torch"
    assert backend(fp32_student=False) == "torch"
    assert backend(device="cuda") == "torch"
    assert load_embedder(model_dir, device="cpu", per_residue=True).backend == "torch"


def _refusal(kind: str, model_dir: Path, fasta: Path, tmp: Path) -> tuple[list[str], str]:
    out = ["--output", str(tmp / "o.parquet")]
    embed_args = ["embed", "--input", str(fasta), *out]
    if kind == "per_residue_onnxruntime":
        return ([*embed_args, "--model", str(model_dir), "--backend", "onnxruntime", "--per-residue",
                 str(tmp / "r.parquet")], "per-residue vectors need --backend torch")
    if kind == "bf16_onnxruntime":
        return ([*embed_args, "--model", str(model_dir), "--backend", "onnxruntime", "--precision", "bf16"],
                "onnxruntime backend runs fp32")
    if kind == "int8_artifact_onnxruntime":
        return ([*embed_args, "--model", str(model_dir / "int8"), "--backend", "onnxruntime"],
                "needs the fp32 student directory")
    if kind == "corrupt_onnx":
        bad = tmp / "broken.onnx"
        bad.write_bytes(b"\x08\x07this is not a protobuf" * 8)
        return [*embed_args, "--model", str(bad)], r"broken\.onnx: not a readable ONNX model"
    if kind == "onnx_without_the_pooling":
        from protkit.models.prothash.model import load_pretrained_dir
        from protkit.onnx.export import export_onnx

        only_mean = export_onnx(load_pretrained_dir(model_dir), tmp / "mean-only.onnx", outputs=("mean",))
        return ([*embed_args, "--model", str(only_mean), "--pooling", "mean,max"],
                r"mean-only\.onnx gives no max pooling; it has mean")
    if kind == "export_int8_prothash":
        return (["export", "--model", str(model_dir), "--format", "prothash", "--int8", *out],
                "--int8 applies to --format onnx only")
    if kind == "export_int8_artifact":
        return (["export", "--model", str(model_dir / "int8"), "--format", "onnx", *out],
                "an int8 artifact; export the fp32 model directory")
    raise AssertionError(kind)


REFUSALS = ["per_residue_onnxruntime", "bf16_onnxruntime", "int8_artifact_onnxruntime", "corrupt_onnx",
            "onnx_without_the_pooling", "export_int8_prothash", "export_int8_artifact"]


@pytest.mark.parametrize("kind", REFUSALS)
def test_refusals_exit_2_one_line_no_output(kind, model_dir, fasta, tmp_path, capsys) -> None:
    argv, message = _refusal(kind, model_dir, fasta, tmp_path)
    assert main(["-q", *argv]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("protkit: error: ") and re.search(message, lines[0]), lines
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "r.parquet").exists()
