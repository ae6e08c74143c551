"""``--model`` to :class:`~protkit.embed.embedder.Embedder`: what a model argument names, which backend
runs it, and the batching defaults, with errors that name the file.

The CPU defaults come from measurements (docs/benchmarks.md; README, "Backends"): with ``--backend auto
--precision auto`` a student runs on the path :mod:`protkit.embed.cpu_paths` measured fastest on the CPU's
capability class (onnxruntime fp32 on AVX2 CPUs, torch bf16 on AMX CPUs), the teacher in the precision
:mod:`protkit.models.precision` picks (bf16 on CPUs with bf16 units), in batches of :data:`CPU_MAX_TOKENS`
padded tokens; on CUDA everything runs in torch.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Sequence

import torch

from protkit.embed.cpu_paths import choose_cpu_path
from protkit.embed.embedder import Embedder, EmbedError, TorchRunner, student_runner, teacher_runner
from protkit.io.digests import file_sha256, json_sha256
from protkit.models.cpu import this_cpu
from protkit.models.device import DTYPES, resolve_device
from protkit.models.esmc.model import CONTEXT_LENGTH as ESMC_CONTEXT
from protkit.models.precision import AUTO, PRECISION_OPTIONS, resolve_precision
from protkit.models.prothash_v1.checkpoint import detect_v1_format
from protkit.models.prothash_v1.config import N_STAGES
from protkit.models.resolve import FoundModel, ModelKind, classify_model, load_student, load_teacher_weights
from protkit.sequences.pooling import POOLINGS, pooling_parts

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
CPU_MAX_TOKENS = 1024  # padded tokens per batch on the CPU: the fastest budget in B7 (larger ones ran slower)
CUDA_MAX_TOKENS = 65536


def load_embedder(
    model: str | Path,
    *,
    int8: bool = False,
    precision: str = AUTO,
    backend: str = "auto",
    device: str | torch.device = "auto",
    per_residue: bool = False,
    poolings: Sequence[str] | None = None,
    stage: int | None = None,
) -> Embedder:
    """An :class:`Embedder` for ``model``:

    - ``esmc_300m`` / ``esmc_600m`` (the Hub's weights, through its cache), an ESMC weights file
      (``.pth``/``.safetensors``) or a Hub-like ESMC directory (``data/weights/*.pth``): the teacher;
    - a student directory (protkit's ``config.json`` + ``model.safetensors``, or the ``prothash``
      package's), an int8 artifact directory (``quantization.json``), or a Hub id of a student;
    - an ``.onnx`` file written by ``protkit export --format onnx`` (onnxruntime backend).

    ``int8``: torch: the student's ``int8/`` artifact (quantized now when absent); onnxruntime: its
    own dynamic int8. ``precision``: the float type of the forward pass (fp32, bf16, fp16), or ``auto``
    (:mod:`protkit.models.precision`; for a student with ``backend="auto"`` on a CPU, the measured path).
    ``backend``: ``torch``, ``onnxruntime`` (students on the CPU) or ``auto`` (:func:`choose_path`).
    ``per_residue``: per-residue vectors will be asked for (torch only). ``poolings``: the poolings
    that will be asked for (a concatenated name such as ``mean+std`` counts as its parts); onnxruntime
    exports a graph with just those (onnxruntime runs every node of a graph, and ``max`` costs ~7%),
    default all; ONNX graphs give ``cls``, ``mean`` and ``max`` only, so the others need torch.
    ``stage``: for a ProtHash 1.0 student, the encoder stage whose vectors (through its adapter) to give,
    1 to 4 (None: 4); refused for other models. ProtHash 1.0 students run in torch, without int8.
    """
    if precision not in PRECISION_OPTIONS:
        raise EmbedError(f"precision must be one of {', '.join(PRECISION_OPTIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise EmbedError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = resolve_device(device) if isinstance(device, str) else device
    if poolings is not None:
        poolings = [part for name in poolings for part in pooling_parts(name)]
    found = classify_model(model)
    staged = found.kind == ModelKind.STUDENT and detect_v1_format(found.path) is not None
    if stage is not None and not staged:
        raise EmbedError(f"model {model}: --stage picks one of the four stages of a ProtHash 1.0 student; this "
                         f"{found.kind.value} model has one output: drop --stage")
    if staged:
        return _staged_student(str(model), found, N_STAGES if stage is None else stage, int8,
                               resolve_precision(precision, device, "student"), backend, device)
    if found.kind == ModelKind.TEACHER:
        if int8:
            raise EmbedError(f"model {model}: --int8 is for ProtHash students; the ESMC teacher runs in fp32/bf16/fp16")
        if backend == "onnxruntime":
            raise EmbedError(f"model {model}: the onnxruntime backend runs ProtHash students only; use --backend torch")
        return _teacher(str(model), found.path, resolve_precision(precision, device, "teacher"), device)
    if found.kind == ModelKind.ONNX:
        if backend == "torch":
            raise EmbedError(f"model {model}: an ONNX file runs in onnxruntime; for --backend torch pass the "
                             "student directory")
        chosen, precision = "onnxruntime", "fp32" if precision == AUTO else precision
    else:
        fp32_student = found.kind == ModelKind.STUDENT
        chosen, precision = choose_path(backend, precision, device, int8, per_residue, fp32_student, poolings)
    if chosen == "onnxruntime":
        beyond_onnx = [p for p in poolings or () if p not in POOLINGS]
        if beyond_onnx:
            raise EmbedError(f"model {model}: the onnxruntime backend gives {', '.join(POOLINGS)} poolings, not "
                             f"{', '.join(beyond_onnx)}; use --backend torch"
                             + (" with the student directory" if found.kind == ModelKind.ONNX else ""))
        if per_residue:
            raise EmbedError(f"model {model}: per-residue vectors need --backend torch (and a student "
                             "directory, not an .onnx file)")
        if precision != "fp32":
            raise EmbedError(f"model {model}: the onnxruntime backend runs fp32 (or --int8); use --backend torch "
                             f"with a student directory for --precision {precision}")
        from protkit.embed.onnx_backend import onnx_embedder

        return onnx_embedder(str(model), found, int8=int8, device=device, poolings=poolings)
    return _torch_student(str(model), found, int8, precision, device)


def choose_path(backend: str, precision: str, device: torch.device, int8: bool, per_residue: bool,
                fp32_student: bool, poolings: Sequence[str] | None = None) -> tuple[str, str]:
    """The backend and precision a student runs with.

    ``backend="auto"``: on the CPU with ``precision="auto"``, the path measured fastest on the CPU's
    capability class (:func:`~protkit.embed.cpu_paths.choose_cpu_path`); with an explicit fp32, onnxruntime
    (B7). Either way onnxruntime only for an fp32-weights student asked for pooled vectors that ONNX graphs
    give (``poolings`` within :data:`~protkit.sequences.pooling.POOLINGS`; None: the defaults), torch otherwise
    (GPUs, bf16/fp16, per-residue, int8 artifacts, std/var/median/norm). ``precision="auto"``: fp32 for int8
    models and onnxruntime, else :func:`~protkit.models.precision.resolve_precision`'s choice."""
    onnx_poolings = all(p in POOLINGS for p in poolings or ())
    onnx_ok = (device.type == "cpu" and not per_residue and fp32_student and onnx_poolings
               and importlib.util.find_spec("onnxruntime") is not None)
    quantized = int8 or not fp32_student
    if backend == "auto" and precision == AUTO and device.type == "cpu":
        path = choose_cpu_path(this_cpu(), quantized)
        if path.backend == "torch" or onnx_ok:
            log.info("backend and precision auto: %s %s (%s)", path.backend, path.precision, path.reason)
            return path.backend, path.precision
        backend = "torch"  # the poolings or per-residue vectors need torch: auto precision below
    elif backend == "auto":
        backend = "onnxruntime" if onnx_ok and precision in ("fp32", AUTO) else "torch"
    if precision == AUTO:
        precision = "fp32" if quantized or backend == "onnxruntime" else resolve_precision(AUTO, device, "student")
    return backend, precision


def default_max_tokens(embedder: Embedder) -> int:
    """Padded tokens per batch when none is given: the measured best for the device (README, B7)."""
    return CUDA_MAX_TOKENS if embedder.device.type == "cuda" else CPU_MAX_TOKENS


def _teacher(source: str, weights: Path, precision: str, device: torch.device) -> Embedder:
    teacher = load_teacher_weights(weights, device, DTYPES[precision])
    config = {**teacher.config.to_dict(), "weights": str(weights)}
    return Embedder(
        source=source, kind="teacher", fingerprint=file_sha256(weights), dim=teacher.config.d_model,
        context_length=ESMC_CONTEXT, config=config, runner=teacher_runner(teacher), device=device,
        precision=precision, model=teacher,
    )


def _torch_student(source: str, found: FoundModel, int8: bool, precision: str, device: torch.device) -> Embedder:
    student = load_student(found, int8=int8)
    if student.quantization is not None and precision != "fp32":
        raise EmbedError(f"model {source}: an int8 model runs with fp32 activations; drop --precision {precision}")
    if student.quantization is not None and device.type == "cpu" and not this_cpu().int8_dot:
        log.warning("model %s: torch's int8 on a CPU without int8 dot products (%s) can saturate (B3: cosine 0.955 "
                    "to fp32); onnxruntime's int8 (--backend auto) keeps 0.9998", source, this_cpu().describe())
    dtype = DTYPES[precision]
    net = student.model.to(device) if student.quantization else student.model.to(device=device, dtype=dtype)
    net.eval()
    config = net.config
    return Embedder(
        source=source, kind="student", fingerprint=student.fingerprint, dim=config.teacher_dim,
        context_length=config.context_length, config=config.to_dict(), runner=student_runner(net, dtype),
        device=device, precision=precision, quantization=student.quantization, model=net,
        extra={"model_format": student.format},
    )


def _staged_student(source: str, found: FoundModel, stage: int, int8: bool, precision: str, backend: str,
                    device: torch.device) -> Embedder:
    """A ProtHash 1.0 student in torch giving ``stage``'s vectors in the teacher's width. Stages 1-3
    get a fingerprint of their own (the weights' sha256 and the stage), so their vectors are never
    mistaken for stage 4's (the default, fingerprinted by the weights alone) in a resume or a search."""
    if not 1 <= stage <= N_STAGES:
        raise EmbedError(f"model {source}: --stage must be 1 to {N_STAGES}, got {stage}")
    if int8 or backend == "onnxruntime":
        raise EmbedError(f"model {source}: a ProtHash 1.0 student runs in torch (fp32, bf16 or fp16); int8 and the "
                         "onnxruntime backend are not available for it: drop --int8 and use --backend torch or auto")
    student = load_student(found)
    dtype = DTYPES[precision]
    net = student.model.to(device=device, dtype=dtype).eval()
    fingerprint = (student.fingerprint if stage == N_STAGES
                   else json_sha256({"weights_sha256": student.fingerprint, "stage": stage}))
    # the adapter (RMSNorm + Linear) is not linear, so every pooling reads its per-token output
    runner = TorchRunner(lambda ids, mask: net.stage_output(ids, mask, stage), None, dtype)
    return Embedder(
        source=source, kind="student", fingerprint=fingerprint, dim=net.config.teacher_dim,
        context_length=net.config.context_length, config=net.config.to_dict(), runner=runner, device=device,
        precision=precision, model=net,
        extra={"model_format": student.format, "stage": stage, "weights_sha256": student.fingerprint},
    )
