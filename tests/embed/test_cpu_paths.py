"""The student's CPU path and the teacher's precision under ``auto``, per CPU class (mocked with
PROTKIT_CPU_FLAGS): the measured table's choice on AMX CPUs, today's defaults unchanged without bf16 units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from protkit.cli.main import main
from protkit.embed.cpu_paths import FLOAT_PATHS, INT8_PATHS, MIN_COSINE, PATHS_FILE, choose_cpu_path, measured_classes
from protkit.embed.loading import load_embedder
from protkit.io.metadata import read_protkit_metadata
from protkit.models.cpu import CLASSES, FLAGS_ENV, CpuCapabilities, this_cpu
from protkit.sequences.fasta import write_fasta

AVX2_FLAGS = "avx2 fma"
VNNI_FLAGS = "avx2 avx512f avx512_vnni"
AMX_FLAGS = "avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile"


def capabilities(flags: str) -> CpuCapabilities:
    return CpuCapabilities("test CPU", frozenset(flags.split()))


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):
    """``use(flags)``: this process (and its children) reports a CPU with ``flags``."""
    def use(flags: str) -> None:
        monkeypatch.setenv(FLAGS_ENV, flags)
        this_cpu.cache_clear()

    yield use
    this_cpu.cache_clear()


@pytest.fixture(scope="module")
def fasta(shared_records, tmp_path_factory) -> Path:
    picked = [r for r in shared_records if len(r.sequence) <= 400][:24]
    path = tmp_path_factory.mktemp("cpu-paths") / "proteins.fasta"
    write_fasta([(r.id, r.sequence) for r in picked], path)
    return path


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    from protkit.teacher import write_random_teacher

    return write_random_teacher({"d_model": 64, "n_heads": 1, "n_layers": 2, "seed": 0},
                                tmp_path_factory.mktemp("teacher") / "esmc.safetensors")


# --- the table -----------------------------------------------------------------------------------------
def test_the_shipped_table_picks_bf16_on_amx_and_keeps_onnxruntime_fp32_elsewhere() -> None:
    amx = choose_cpu_path(capabilities(AMX_FLAGS), int8=False)
    assert (amx.backend, amx.precision) == ("torch", "bf16") and "torch bf16" in amx.reason
    for flags in (AVX2_FLAGS, VNNI_FLAGS, "avx2 avx512f avx512_bf16", ""):
        path = choose_cpu_path(capabilities(flags), int8=False)
        assert (path.backend, path.precision) == ("onnxruntime", "fp32"), flags
    for flags in (AVX2_FLAGS, AMX_FLAGS):
        assert choose_cpu_path(capabilities(flags), int8=True).backend == "onnxruntime"


def test_the_choice_follows_the_numbers_within_the_cosine_guard() -> None:
    entry = {"cpu": "x", "source": "y",
             "residues_per_s": {"torch fp32": 10, "torch bf16": 30, "onnxruntime fp32": 12, "onnxruntime int8": 20,
                                "torch int8": 40},
             "min_cosine": {"torch fp32": 1.0, "torch bf16": 0.998, "onnxruntime fp32": 1.0, "onnxruntime int8": 0.9995,
                            "torch int8": 0.9996}}
    table = {"vnni": entry, "avx2": entry}
    fast_but_lossy = choose_cpu_path(capabilities(VNNI_FLAGS), int8=False, classes=table)
    assert (fast_but_lossy.backend, fast_but_lossy.precision) == ("onnxruntime", "fp32")  # bf16 misses 0.999
    assert choose_cpu_path(capabilities(VNNI_FLAGS), int8=True, classes=table).backend == "torch"
    # torch's int8 saturates without int8 dot products: never chosen there, however it was measured
    assert choose_cpu_path(capabilities(AVX2_FLAGS), int8=True, classes=table).backend == "onnxruntime"
    no_float_qualifies = {"vnni": {**entry, "min_cosine": {k: 0.5 for k in entry["min_cosine"]}}}
    fallback = choose_cpu_path(capabilities(VNNI_FLAGS), int8=False, classes=no_float_qualifies)
    assert (fallback.backend, fallback.precision) == ("onnxruntime", "fp32") and "no measurement" in fallback.reason


def test_the_table_names_known_classes_and_paths_with_their_measurement() -> None:
    classes = measured_classes()
    assert set(classes) <= {name for name, _ in CLASSES} and {"amx", "avx2"} <= set(classes)
    for name, entry in classes.items():
        assert entry["cpu"] and entry["source"], name
        assert set(entry["residues_per_s"]) <= set(FLOAT_PATHS) | set(INT8_PATHS), name
        assert set(entry["residues_per_s"]) == set(entry["min_cosine"]), name
        assert all(v > 0 for v in entry["residues_per_s"].values()), name
    assert json.loads(PATHS_FILE.read_text())["about"]
    assert MIN_COSINE == 0.999


# --- loading under a mocked CPU ------------------------------------------------------------------------
def test_amx_defaults_run_the_student_in_torch_bf16_and_the_teacher_in_bf16(cpu_flags, model_dir, teacher_file):
    cpu_flags(AMX_FLAGS)
    default = load_embedder(model_dir, device="cpu")
    assert (default.backend, default.precision) == ("torch", "bf16")
    assert next(default.model.parameters()).dtype == torch.bfloat16
    explicit = load_embedder(model_dir, device="cpu", backend="onnxruntime", precision="fp32")
    assert (explicit.backend, explicit.precision) == ("onnxruntime", "fp32")
    assert load_embedder(model_dir, device="cpu", precision="fp32").backend == "onnxruntime"
    assert (load_embedder(model_dir, device="cpu", backend="torch").precision) == "bf16"
    int8 = load_embedder(model_dir, device="cpu", int8=True)
    assert (int8.backend, int8.precision) == ("onnxruntime", "fp32")
    assert load_embedder(model_dir / "int8", device="cpu").precision == "fp32"  # an int8 artifact: fp32 activations
    assert load_embedder(teacher_file, device="cpu").precision == "bf16"
    assert load_embedder(teacher_file, device="cpu", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("flags", [AVX2_FLAGS, VNNI_FLAGS, ""])
def test_without_bf16_units_the_defaults_are_unchanged(cpu_flags, model_dir, teacher_file, flags):
    cpu_flags(flags)
    default = load_embedder(model_dir, device="cpu")
    assert (default.backend, default.precision) == ("onnxruntime", "fp32")
    assert load_embedder(model_dir, device="cpu", backend="torch").precision == "fp32"
    assert load_embedder(model_dir, device="cpu", poolings=["std"]).precision == "fp32"
    assert load_embedder(teacher_file, device="cpu").precision == "fp32"


def embed(fasta: Path, model: Path, out: Path, *extra: str) -> tuple[np.ndarray, dict]:
    argv = ["-q", "embed", "--model", str(model), "--input", str(fasta), "--output", str(out), "--device", "cpu"]
    assert main([*argv, *extra]) == 0
    return np.stack(pq.read_table(out).column("mean").to_numpy(zero_copy_only=False)), read_protkit_metadata(out)


def test_embed_records_the_chosen_path_and_keeps_the_vectors(cpu_flags, model_dir, fasta, tmp_path):
    cpu_flags(AVX2_FLAGS)
    today, today_meta = embed(fasta, model_dir, tmp_path / "today.parquet", "--backend", "onnxruntime",
                              "--precision", "fp32")
    default, default_meta = embed(fasta, model_dir, tmp_path / "avx2.parquet")
    assert (default_meta["backend"], default_meta["precision"]) == ("onnxruntime", "fp32")
    np.testing.assert_array_equal(default, today)  # the same path: the same numbers
    cpu_flags(AMX_FLAGS)
    amx, amx_meta = embed(fasta, model_dir, tmp_path / "amx.parquet")
    assert (amx_meta["backend"], amx_meta["precision"]) == ("torch", "bf16")
    cosine = (amx * today).sum(1) / np.linalg.norm(amx, axis=1) / np.linalg.norm(today, axis=1)
    assert cosine.min() >= 0.999, cosine.min()


def test_this_machines_default_path_keeps_the_fp32_vectors(monkeypatch, model_dir, fasta, tmp_path):
    """The real CPU's own choice (no PROTKIT_CPU_FLAGS): on an AMX CPU this runs torch bf16 for real."""
    monkeypatch.delenv(FLAGS_ENV)
    this_cpu.cache_clear()
    try:
        expected = choose_cpu_path(this_cpu(), int8=False)
        default, meta = embed(fasta, model_dir, tmp_path / "default.parquet")
        reference, _ = embed(fasta, model_dir, tmp_path / "fp32.parquet", "--backend", "torch", "--precision", "fp32")
    finally:
        this_cpu.cache_clear()
    assert (meta["backend"], meta["precision"]) == (expected.backend, expected.precision), this_cpu().describe()
    cosine = (default * reference).sum(1) / np.linalg.norm(default, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
