"""CUDA checks: what protkit computes on a GPU agrees with what it computes in fp32 on the CPU.

Run by the prepared GPU run (``pytest -m cuda tests/gpu``, full sizes on the GPU) and by its CPU dry
run (``PROTKIT_GPU_DEVICE=cpu PROTKIT_GPU_SIZE=tiny``: the same code with the CPU as the device and
tiny sizes); ``tests/gpu/conftest.py`` describes the settings. Every model has seeded random weights
(the trained ones cannot be downloaded here), every protein is a real DeepLoc protein, and each test
records what it measured (``record``) before it asserts:

1. the ESMC teacher cast whole to bf16 and to fp16 against fp32 on the device (B11's errors, our
   limits asserted, FastPLMs' recorded beside them);
2. the fp32 ProtHash student on the device against the same weights on the CPU (TF32 off);
3. the torchao int8 student (protkit's ``quantize_model``, both methods) on the device against fp32;
4. a short distillation through protkit's trainer, bf16 autocast on the device (the trainer's
   ``training.bf16``, on CUDA only) against fp32 on the CPU: the same per-step losses, within a tolerance;
5. ``protkit embed --device <device>`` against ``--device cpu`` in fresh processes.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.b11_precision import (
    POOLED_COSINE, PRECISIONS, REL_L2_LIMIT, RESIDUE_COSINE_P1, Outputs, errors, length_sorted_batches, run_model,
    teacher_hidden,
)  # fmt: skip
from benchmarks.common import (
    MAX_LENGTH, QUICK_STUDENT, SEED, STUDENT, cosines, max_relative_l2, saved_student, student_model,
)  # fmt: skip
from protkit.distill.checkpoints import checkpoint_files
from protkit.distill.config import TrainConfig
from protkit.distill.loop import prepare_training, train
from protkit.distill.objectives import DistillData
from protkit.embed.embedder import pooled_embeddings, student_forward, teacher_forward
from protkit.models.esmc import ESMC, ESMC_PRESETS, ESMCConfig, random_esmc
from protkit.models.precision import BF16_POOLED_COSINE, BF16_RESIDUE_COSINE_P1
from protkit.models.prothash import PRESETS, ProtHash, ProtHashConfig
from protkit.models.prothash.int8 import METHODS, quantize_model
from protkit.search.vectors import read_embeddings
from protkit.sequences.fasta import write_fasta
from protkit.sequences.pooling import TARGET_POOLINGS
from protkit.sequences.tokenize import TokenBatch, encode_one, token_count

pytestmark = pytest.mark.cuda

CPU = torch.device("cpu")
Proteins = list[tuple[str, str]]  # (id, sequence)

# Our limits (FastPLMs' bf16 parity limits, recorded beside them, are B11's REL_L2_LIMIT,
# RESIDUE_COSINE_P1 and POOLED_COSINE).
TEACHER_POOLED_COSINE = BF16_POOLED_COSINE  # min over proteins, mean-pooled in fp32
TEACHER_RESIDUE_COSINE_P1 = BF16_RESIDUE_COSINE_P1  # 1st percentile over residues
DEVICE_RELATIVE_L2 = 1e-4  # fp32 student, device vs CPU: max over proteins of |x - y| / |y| (pooled)
INT8_COSINE = 0.999  # min over proteins, int8 vs fp32 pooled vectors (B3's goal)
CLI_COSINE = 0.9999  # min over proteins, protkit embed on the device vs on the CPU
# Distillation, bf16 autocast on the device vs fp32 on the CPU, per-step loss |a - b| / b: the first
# step (same weights: only the forward's rounding differs), the mean of the last FINAL_WINDOW steps,
# and every step; and the held-out mean-pooling cosine after training. Measured with protkit's steps
# under bf16 autocast on the CPU (the trainer autocasts on CUDA only, so the measurement forced it):
# full sizes, 50 steps at lr 5e-4: first 7e-5, last steps 2e-4, any step 3.4e-4, held-out cosine 1e-5;
# tiny, 10 steps at lr 2e-3: first 3e-5, last steps 2e-4, any step 6e-4. The limits leave 50-150x for
# CUDA's kernels, which round differently, and still catch a broken autocast (overflow, a dropped
# cast) at once. (At lr 2e-3 the full student's loss spikes and the runs then part by up to 29% per
# step: a chaotic trajectory, hence the trainer's default rate for the full sizes.)
FIRST_LOSS_RTOL = 0.01
FINAL_LOSS_RTOL = 0.02
STEP_LOSS_RTOL = 0.05
HELDOUT_COSINE_ATOL = 0.01
LOSS_FALL = 0.75  # the last steps' mean loss must be below this fraction of the first (measured 0.07 full, 0.52 tiny)
COSINE_RISE = 0.1  # and training must raise the held-out mean cosine by this much (measured +0.93 full, +0.33 tiny)
FINAL_WINDOW = 5  # steps averaged for the final loss
FALLBACK_WARNING = "no CUDA device is usable"  # protkit.models.device's warning when cuda falls back to the CPU


@dataclass(frozen=True)
class Sizes:
    """The models and samples of one size (``PROTKIT_GPU_SIZE``)."""

    teacher: ESMCConfig
    student: ProtHashConfig
    n_proteins: int  # tests 1-3: a sample of DeepLoc proteins ...
    max_residues: int | None  # ... of at most this many residues (None: any, truncated at 1022)
    max_tokens: int  # padded tokens per batch
    distill_train: int  # test 4: training proteins ...
    distill_test: int  # ... and held-out ones, of at most ...
    distill_residues: int  # ... this many residues
    distill_steps: int
    distill_batch_tokens: int
    distill_lr: float
    cli_proteins: int  # test 5

    @property
    def quick(self) -> bool:
        """Whether the student is benchmarks.common's quick one (``student_model(quick=True)``)."""
        return self.student == QUICK_STUDENT


# Full: esmc_300m and ProtHash-V2-384-Tiny on 256 proteins of every length (truncated at 1022
# residues) in 16k-token batches, B11's GPU batches (bf16 esmc_300m needs well under 10 GB of an
# 80 GB GPU); the distillation at the trainer's default learning rate. Tiny: a 2-layer ESMC of width
# 64 and benchmarks' quick student on proteins of at most 64 residues, with a learning rate high
# enough that 10 steps move the loss.
FULL = Sizes(
    teacher=ESMC_PRESETS["esmc_300m"], student=PRESETS[STUDENT], n_proteins=256, max_residues=None,
    max_tokens=16384, distill_train=192, distill_test=64, distill_residues=256, distill_steps=50,
    distill_batch_tokens=4096, distill_lr=5e-4, cli_proteins=64,
)
TINY = Sizes(
    teacher=ESMCConfig(d_model=64, n_heads=2, n_layers=2), student=QUICK_STUDENT, n_proteins=12, max_residues=64,
    max_tokens=256, distill_train=24, distill_test=8, distill_residues=64, distill_steps=10,
    distill_batch_tokens=512, distill_lr=2e-3, cli_proteins=6,
)


@pytest.fixture(scope="module")
def sizes(gpu_size: str) -> Sizes:
    """``FULL`` or ``TINY``, as ``PROTKIT_GPU_SIZE`` says."""
    return FULL if gpu_size == "full" else TINY


def sample(proteins: Proteins, n: int, max_residues: int | None) -> Proteins:
    """The first ``n`` proteins (of the fixture's seeded order) of at most ``max_residues`` residues."""
    chosen = [p for p in proteins if max_residues is None or len(p[1]) <= max_residues][:n]
    if len(chosen) < n:
        pytest.fail(f"the DeepLoc file has {len(chosen)} proteins of <= {max_residues} residues, the test needs {n}")
    return chosen


def token_lists(proteins: Proteins, max_length: int = MAX_LENGTH) -> list[list[int]]:
    """Token ids (CLS + residues + EOS) of each protein, truncated to ``max_length`` tokens."""
    return [encode_one(sequence, max_length) for _, sequence in proteins]


def residue_total(tokens: list[list[int]]) -> int:
    """Residues of token lists (CLS and EOS taken off)."""
    return sum(len(t) - 2 for t in tokens)


# --- 1. teacher bf16/fp16 vs fp32 ----------------------------------------------------------------------
@dataclass
class TeacherReference:
    """The fp32 teacher on the device, its padded batches and its fp32 outputs."""

    teacher: ESMC
    batches: list[TokenBatch]
    fp32: Outputs
    n_proteins: int
    n_residues: int


@pytest.fixture(scope="module")
def teacher_reference(gpu_device: torch.device, sizes: Sizes, deeploc_proteins: Proteins,
                      strict_fp32: None) -> TeacherReference:
    """The seeded teacher in fp32 on the device and its outputs on the sample's padded batches."""
    tokens = token_lists(sample(deeploc_proteins, sizes.n_proteins, sizes.max_residues))
    batches = length_sorted_batches(tokens, sizes.max_tokens)
    teacher = random_esmc(sizes.teacher, seed=SEED).to(gpu_device).eval()
    fp32 = run_model(teacher, teacher_hidden, batches, gpu_device)
    return TeacherReference(teacher, batches, fp32, len(tokens), residue_total(tokens))


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_teacher_cast_to_low_precision_matches_fp32(precision: str, teacher_reference: TeacherReference,
                                                    gpu_device: torch.device, record) -> None:
    """The teacher cast whole to bf16/fp16 keeps its pooled vectors and nearly all residue vectors."""
    ref = teacher_reference
    cast = copy.deepcopy(ref.teacher).to(PRECISIONS[precision])
    got = run_model(cast, teacher_hidden, ref.batches, gpu_device)
    del cast
    e = errors(got, ref.fp32)
    record(
        f"teacher_{precision}_vs_fp32", teacher=ref.teacher.config.to_dict(), proteins=ref.n_proteins,
        residues=ref.n_residues, batches=len(ref.batches), mse=e.mse, relative_l2=e.relative_l2,
        residue_cosine_p1=e.residue_cosine_p1, pooled_cosine_min=e.pooled_cosine_min, seconds=got.seconds,
        fp32_seconds=ref.fp32.seconds,
        limits={"pooled_cosine": TEACHER_POOLED_COSINE, "residue_cosine_p1": TEACHER_RESIDUE_COSINE_P1},
        fastplms_limits={"relative_l2": REL_L2_LIMIT, "residue_cosine_p1": RESIDUE_COSINE_P1,
                         "pooled_cosine": POOLED_COSINE},
        fastplms_met={"relative_l2": e.relative_l2 <= REL_L2_LIMIT,
                      "residue_cosine_p1": e.residue_cosine_p1 >= RESIDUE_COSINE_P1,
                      "pooled_cosine": e.pooled_cosine_min >= POOLED_COSINE, "all": e.within_limits()},
    )
    assert e.pooled_cosine_min >= TEACHER_POOLED_COSINE, f"{precision}: min pooled cosine {e.pooled_cosine_min:.7f}"
    assert e.residue_cosine_p1 >= TEACHER_RESIDUE_COSINE_P1, f"{precision}: residue cosine p1 {e.residue_cosine_p1:.7f}"


# --- 2. and 3. the student on the device: vs the CPU, and int8 ---------------------------------------
@dataclass
class StudentReference:
    """The fp32 student on the device, the tokens it embeds and its pooled vectors there."""

    model: ProtHash
    tokens: list[list[int]]
    vectors: np.ndarray  # (N, teacher_dim) mean-pooled in the teacher's width
    seconds: float


def embed_mean(model: torch.nn.Module, tokens: list[list[int]], max_tokens: int, device: torch.device) -> np.ndarray:
    """Mean-pooled vectors in the teacher's width through protkit's embedding loop.  # (N, teacher_dim)"""
    dim = model.config.teacher_dim
    return pooled_embeddings(student_forward(model), tokens, ["mean"], dim, max_tokens, device)["mean"]


@pytest.fixture(scope="module")
def student_reference(gpu_device: torch.device, sizes: Sizes, deeploc_proteins: Proteins,
                      strict_fp32: None) -> StudentReference:
    """The seeded student in fp32 on the device and its mean-pooled vectors of the sample."""
    tokens = token_lists(sample(deeploc_proteins, sizes.n_proteins, sizes.max_residues))
    model = student_model(sizes.quick, gpu_device, seed=SEED)
    start = time.perf_counter()
    vectors = embed_mean(model, tokens, sizes.max_tokens, gpu_device)
    return StudentReference(model, tokens, vectors, time.perf_counter() - start)


def test_student_on_device_matches_the_cpu(student_reference: StudentReference, sizes: Sizes, record) -> None:
    """The same fp32 weights embed the same proteins on the device as on the CPU (TF32 off)."""
    ref = student_reference
    on_cpu = copy.deepcopy(ref.model).to(CPU)
    start = time.perf_counter()
    expected = embed_mean(on_cpu, ref.tokens, sizes.max_tokens, CPU)  # (N, D)
    cpu_seconds = time.perf_counter() - start
    worst = max_relative_l2(torch.from_numpy(ref.vectors), torch.from_numpy(expected))
    record(
        "student_fp32_device_vs_cpu", d_model=ref.model.config.d_model, n_layers=ref.model.config.n_layers,
        proteins=len(ref.tokens), residues=residue_total(ref.tokens), max_relative_l2=worst,
        min_cosine=float(cosines(ref.vectors, expected).min()), limit=DEVICE_RELATIVE_L2,
        tf32=torch.backends.cuda.matmul.allow_tf32, seconds=ref.seconds, cpu_seconds=cpu_seconds,
    )
    assert worst <= DEVICE_RELATIVE_L2, f"pooled vectors, device vs CPU: max relative L2 {worst:.2e}"


@pytest.mark.parametrize("method", METHODS)
def test_int8_student_on_device_matches_fp32(method: str, student_reference: StudentReference, sizes: Sizes,
                                             gpu_device: torch.device, record) -> None:
    """protkit's int8 path (``quantize_model`` on the CPU, then moved to the device, as ``load_quantized``
    does) must run on the device and stay close to the fp32 student there."""
    ref = student_reference
    name = f"student_{method}_vs_fp32"
    start = time.perf_counter()
    try:
        quantized = quantize_model(ref.model, method).to(gpu_device)
        got = embed_mean(quantized, ref.tokens, sizes.max_tokens, gpu_device)  # (N, D)
    except Exception as err:  # torchao without int8 kernels for this device: recorded, then a failure
        error = f"{type(err).__name__}: {err}"
        record(name, error=error)
        pytest.fail(f"torchao {method} does not run on {gpu_device}: {error}")
    seconds = time.perf_counter() - start
    cosine = cosines(got, ref.vectors)  # (N,)
    record(name, proteins=len(ref.tokens), min_cosine=float(cosine.min()), mean_cosine=float(cosine.mean()),
           limit=INT8_COSINE, seconds=seconds, fp32_seconds=ref.seconds)
    assert cosine.min() >= INT8_COSINE, f"{method} vs fp32 on {gpu_device}: min cosine {cosine.min():.7f}"


# --- 4. distillation: bf16 autocast on the device vs fp32 on the CPU ----------------------------------
def distill_data(teacher: ESMC, proteins: Proteins, max_tokens: int, device: torch.device) -> DistillData:
    """``proteins`` with the teacher's pooled targets (what a teacher cache holds), computed on ``device``."""
    tokens = token_lists(proteins)
    dim = teacher.config.d_model
    targets = pooled_embeddings(teacher_forward(teacher), tokens, TARGET_POOLINGS, dim, max_tokens, device)
    return DistillData([s for _, s in proteins], targets, ids=[i for i, _ in proteins])


def step_losses(checkpoint_dir: Path) -> list[float]:
    """The per-step training losses a run's last checkpoint holds."""
    state = torch.load(checkpoint_files(checkpoint_dir)[-1], map_location="cpu", weights_only=True)
    return list(state["progress"]["losses"])


def test_bf16_distillation_on_device_tracks_fp32_on_the_cpu(gpu_device: torch.device, sizes: Sizes,
                                                             deeploc_proteins: Proteins, tmp_path: Path,
                                                             strict_fp32: None, record) -> None:
    """The same training (seed, data, settings) in fp32 on the CPU and with the trainer's bf16 autocast on
    the device: both learn, and their per-step losses and held-out cosines agree."""
    chosen = sample(deeploc_proteins, sizes.distill_train + sizes.distill_test, sizes.distill_residues)
    teacher = random_esmc(sizes.teacher, seed=SEED).to(gpu_device).eval()
    train_data = distill_data(teacher, chosen[: sizes.distill_train], sizes.max_tokens, gpu_device)
    test_data = distill_data(teacher, chosen[sizes.distill_train :], sizes.max_tokens, gpu_device)
    del teacher
    steps = sizes.distill_steps
    # A random start (not the ridge-fitted adapter): the loss starts high and falls steeply, so the
    # runs' agreement is measured on a loss that moves, not on the small noisy one of a fitted start.
    cfg = TrainConfig(lr=sizes.distill_lr, warmup_steps=max(1, steps // 10), max_steps=steps,
                      batch_tokens=sizes.distill_batch_tokens, eval_every=steps, checkpoint_every=steps,
                      keep_checkpoints=1, max_length=token_count(sizes.distill_residues), seed=SEED, bf16=True,
                      adapter_init="random", residual_init="random")
    runs = {"cpu_fp32": CPU, "device": gpu_device}
    losses, summaries, seconds = {}, {}, {}
    for label, device in runs.items():
        out = tmp_path / label
        start = time.perf_counter()
        summaries[label] = train(sizes.student, cfg, None, train_data, test_data, out / "model", out / "checkpoints",
                                 out / "tensorboard", device)
        seconds[label] = time.perf_counter() - start
        losses[label] = step_losses(out / "checkpoints")
    autocast = prepare_training(sizes.student, cfg, train_data, test_data, gpu_device, "gpu")[1]
    ours, ref = np.array(losses["device"]), np.array(losses["cpu_fp32"])  # (steps,)
    relative = np.abs(ours - ref) / ref  # (steps,)
    final_ours, final_ref = ours[-FINAL_WINDOW:].mean(), ref[-FINAL_WINDOW:].mean()
    final_relative = abs(final_ours - final_ref) / final_ref
    cosine = {k: (s["heldout_cosine_initial"]["mean"], s["heldout_cosine_final"]["mean"]) for k, s in summaries.items()}
    cosine_gap = abs(cosine["device"][1] - cosine["cpu_fp32"][1])
    record(
        "distill_bf16_device_vs_fp32_cpu", student=sizes.student.to_dict(), steps=steps, lr=cfg.lr,
        bf16_autocast=autocast, train_proteins=len(train_data), test_proteins=len(test_data), losses_device=ours,
        losses_cpu_fp32=ref, first_step_relative=relative[0], final_relative=final_relative,
        max_step_relative=relative.max(), heldout_mean_cosine_initial_final=cosine, heldout_cosine_gap=cosine_gap,
        limits={"first_step": FIRST_LOSS_RTOL, "final": FINAL_LOSS_RTOL, "any_step": STEP_LOSS_RTOL,
                "heldout_cosine": HELDOUT_COSINE_ATOL}, seconds=seconds,
    )
    assert len(ours) == len(ref) == steps
    assert np.isfinite(ours).all(), f"non-finite losses on {gpu_device}: {ours.tolist()}"
    for label, values in (("device", ours), ("cpu_fp32", ref)):
        assert values[-FINAL_WINDOW:].mean() < LOSS_FALL * values[0], f"{label} loss did not fall: {values.tolist()}"
        initial, final = cosine[label]
        assert final >= initial + COSINE_RISE, f"{label} held-out mean cosine {initial:.4f} -> {final:.4f}"
    assert relative[0] <= FIRST_LOSS_RTOL, f"first-step losses differ by {relative[0]:.2%}"
    assert final_relative <= FINAL_LOSS_RTOL, f"final losses {final_ours:.5f} vs {final_ref:.5f} ({final_relative:.2%})"
    assert relative.max() <= STEP_LOSS_RTOL, f"step {int(relative.argmax()) + 1}: losses differ by {relative.max():.2%}"
    assert cosine_gap <= HELDOUT_COSINE_ATOL, (
        f"held-out mean cosine after training {cosine['device'][1]:.4f} vs {cosine['cpu_fp32'][1]:.4f}")


# --- 5. protkit embed on the device vs on the CPU -------------------------------------------------
def protkit_command() -> list[str]:
    """``protkit`` through this interpreter (``python -m protkit``): the same environment as the test,
    with or without a console script installed."""
    return [sys.executable, "-m", "protkit"]


def test_cli_embed_on_device_matches_the_cpu(gpu_device: torch.device, sizes: Sizes, deeploc_proteins: Proteins,
                                             tmp_path: Path, record) -> None:
    """``protkit embed`` (fresh processes, torch backend) on the device and on the CPU: same rows and vectors."""
    proteins = sample(deeploc_proteins, sizes.cli_proteins, sizes.max_residues)
    fasta = tmp_path / "proteins.fasta"
    write_fasta(proteins, fasta)
    model_dir = saved_student(student_model(sizes.quick, CPU, seed=SEED), tmp_path / "student")
    runs = {"device": gpu_device.type, "cpu": "cpu"}
    outputs, seconds, stderr, failures = {}, {}, {}, {}
    for label, device in runs.items():
        out = tmp_path / f"{label}.parquet"
        start = time.perf_counter()
        done = subprocess.run(
            [*protkit_command(), "embed", "--model", str(model_dir), "--input", str(fasta), "--output", str(out),
             "--device", device, "--backend", "torch", "--precision", "fp32", "--pooling", "mean"],
            capture_output=True, text=True, timeout=600,
        )
        seconds[label], stderr[label] = time.perf_counter() - start, done.stderr
        if done.returncode:
            failures[label] = f"protkit embed --device {device} exited {done.returncode}:\n{done.stderr[-3000:]}"
        else:
            outputs[label] = read_embeddings(out, "mean")
    ours, ref = outputs.get("device"), outputs.get("cpu")
    comparable = ours is not None and ref is not None and ours.vectors.shape == ref.vectors.shape
    cosine = (ours.vectors * ref.vectors).sum(1) if comparable else np.array([np.nan])  # (N,) unit rows
    fell_back = FALLBACK_WARNING in stderr["device"]
    record("cli_embed_device_vs_cpu", command=protkit_command(), proteins=len(proteins),
           min_cosine=float(cosine.min()), limit=CLI_COSINE, same_ids=comparable and ours.ids == ref.ids,
           backend=ours.meta.get("backend") if ours else None, fell_back_to_cpu=fell_back,
           errors=failures, seconds=seconds)
    assert not failures, "\n".join(failures.values())
    assert not fell_back, f"protkit embed --device {gpu_device.type} ran on the CPU:\n{stderr['device'][-2000:]}"
    assert ours.ids == ref.ids == [i for i, _ in proteins]
    assert ours.meta["backend"] == ref.meta["backend"] == "torch"
    assert cosine.min() >= CLI_COSINE, f"protkit embed, device vs CPU: min cosine {cosine.min():.7f}"
