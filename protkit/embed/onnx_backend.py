"""The onnxruntime backend of ``protkit embed``: a ProtHash student as an ONNX graph on the CPU.

A student directory (or Hub id) is exported once by :func:`protkit.onnx.export.export_onnx` into
the ONNX cache (``$PROTKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/protkit``, else ``~/.cache/protkit``;
sub-directory ``onnx/``), keyed by the weights' sha256, the configuration, the precision, the
pooled outputs asked for (onnxruntime runs every node of a graph, so a graph holds only those) and
protkit's version; later runs load the cached file. An ``.onnx`` file written by
``protkit export --format onnx`` runs as it is.

fp32 gives torch fp32's vectors to about 1e-6 relative L2; ``--int8`` gives onnxruntime's dynamic
int8 (per-channel int8 weights, uint8 activations quantized per batch: cosine to fp32 >= 0.999, but
a protein's vector depends slightly on its batch). Pooled outputs only (``cls``, ``mean``, ``max``):
the other poolings (``std``, ``var``, ``median``, ``norm``) and per-residue vectors need the torch backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import torch

from protkit.embed.embedder import Embedder, EmbedError, Pooled, Residues
from protkit.io.digests import file_sha256
from protkit.models.names import WEIGHTS_FILE
from protkit.models.prothash.model import load_pretrained_dir
from protkit.models.resolve import FoundModel, ModelKind
from protkit.onnx.export import export_onnx
from protkit.onnx.session import OrtStudent
from protkit.sequences.pooling import POOLINGS
from protkit.sequences.tokenize import TokenBatch
from protkit.version import VERSION

log = logging.getLogger(__name__)



class OrtRunner:
    """A :class:`~protkit.embed.embedder.BatchRunner` over an :class:`~protkit.onnx.session.OrtStudent`."""

    def __init__(self, student: OrtStudent) -> None:
        self.student = student

    def __call__(self, batch: TokenBatch, poolings: Sequence[str], residues: bool) -> tuple[Pooled, Residues | None]:
        if residues:
            raise EmbedError("per-residue vectors need the torch backend (--backend torch)")
        pooled = self.student.run(batch.input_ids.cpu().numpy(), batch.attention_mask.cpu().numpy(), list(poolings))
        return pooled, None


def cache_dir() -> Path:
    """Where exported ONNX files are kept (see the module docstring)."""
    if os.environ.get("PROTKIT_CACHE_DIR"):
        return Path(os.environ["PROTKIT_CACHE_DIR"]) / "onnx"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "protkit" / "onnx"


def onnx_embedder(
    source: str, found: FoundModel, *, int8: bool, device: torch.device, poolings: Sequence[str] | None = None
) -> Embedder:
    """An onnxruntime :class:`~protkit.embed.embedder.Embedder` for a student directory (exported with the
    outputs ``poolings``, default all of :data:`POOLINGS`) or an ``.onnx`` file (its own outputs)."""
    if device.type != "cpu":
        raise EmbedError(f"model {source}: the onnxruntime backend runs on the CPU; use --backend torch on {device.type}")
    if found.kind == ModelKind.ONNX:
        path = found.path
        if int8:
            raise EmbedError(f"model {source}: an ONNX file's precision is fixed at export; drop --int8 "
                             "(export with `protkit export --format onnx --int8` for an int8 file)")
    elif found.kind == ModelKind.STUDENT:
        outputs = tuple(p for p in POOLINGS if poolings is None or p in poolings)
        if not outputs:
            raise EmbedError(f"model {source}: the onnxruntime backend gives {', '.join(POOLINGS)} poolings, "
                             f"not {', '.join(poolings or [])}")
        path = exported_onnx(found.path, int8, outputs)
    else:
        raise EmbedError(f"model {source}: the onnxruntime backend needs the fp32 student directory "
                         f"(it quantizes its own int8 with --int8); this is {found.kind.value}")
    student = OrtStudent(path, threads=torch.get_num_threads())
    meta = student.metadata
    config = meta["config"]
    available = tuple(p for p in POOLINGS if p in student.outputs)
    if not available:
        raise EmbedError(f"{path}: the ONNX file has none of the outputs {', '.join(POOLINGS)}; re-export it")
    precision = meta["precision"]
    return Embedder(
        source=source, kind="student", fingerprint=meta["weights_sha256"] or file_sha256(path),
        dim=int(config["teacher_dim"]), context_length=int(config["context_length"]), config=config,
        runner=OrtRunner(student), device=device, precision="fp32", poolings=available,
        quantization=None if precision == "fp32" else f"onnx_{precision}", backend="onnxruntime",
        extra={"model_format": "onnx", "onnx_file": str(path), "onnx_threads": torch.get_num_threads()},
    )


def exported_onnx(directory: Path, int8: bool, outputs: Sequence[str] = POOLINGS) -> Path:
    """The cached ONNX export of the student in ``directory`` with ``outputs`` (exported now if absent)."""
    model = load_pretrained_dir(directory)  # first: a bad config.json or weights file is reported here
    sha = file_sha256(directory / WEIGHTS_FILE)
    key = hashlib.sha256(f"{sha} {json.dumps(model.config.to_dict(), sort_keys=True)}".encode()).hexdigest()
    name = f"{key[:24]}-{'int8' if int8 else 'fp32'}-{'+'.join(outputs)}-protkit{VERSION}.onnx"
    path = cache_dir() / name
    if path.is_file():
        return path
    log.info("exporting %s to ONNX%s (once; cached at %s)", directory, " int8" if int8 else "", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_onnx(model, path, weights_sha256=sha, outputs=tuple(outputs), int8=int8)
