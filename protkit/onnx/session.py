"""Run an exported ProtHash ONNX file (:mod:`protkit.onnx.export`) with onnxruntime on the CPU.

``OrtStudent(path).run(input_ids, attention_mask, outputs=("mean",))`` returns pooled float32
``(B, D)`` arrays by output name; ``attention_mask`` may be int or bool (1/True on tokens).
Session settings (:func:`session_options`, measured on 2 CPU cores): all graph optimisations
(SiLU fusion, shared rotary tables and masks; for int8, DynamicQuantizeMatMul and
MatMulIntegerToFloat fusions), sequential execution, ``threads`` intra-op threads (default:
onnxruntime's, one per physical core) and onnxruntime's spinning worker threads, which keep a core
busy for some 45 ms after each run but make back-to-back small batches faster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from protkit.onnx.export import OUTPUTS, protkit_metadata


class OnnxModelError(ValueError):
    """An .onnx file that is unreadable or not a protkit export; the message names it."""


def read_onnx_metadata(path: str | Path) -> dict:
    """protkit's metadata of an exported file: ``config`` (dict), ``outputs`` (list), ``inputs``
    (dict name -> dtype), ``version``, ``precision``, ``weights_sha256`` (None if not stored) and
    ``quantization`` (dict, None for fp32)."""
    import onnx

    path = _existing(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise OnnxModelError(f"{path}: not a readable ONNX model ({err})") from err
    props = protkit_metadata(proto)
    if "config" not in props:
        raise OnnxModelError(f"{path}: no protkit metadata (was it written by protkit.onnx.export.export_onnx?)")
    return {
        "config": json.loads(props["config"]),
        "outputs": json.loads(props.get("outputs", json.dumps(list(OUTPUTS)))),
        "inputs": json.loads(props.get("inputs", "{}")),
        "version": props.get("version"),
        "precision": props.get("precision", "fp32"),
        "weights_sha256": props.get("weights_sha256"),
        "quantization": json.loads(props["quantization"]) if "quantization" in props else None,
    }


def session_options(threads: int | None = None):
    """The tuned CPU session options: ORT_ENABLE_ALL, sequential, ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: the NCHWc note on saving is not for users
    return options


class OrtStudent:
    """A ProtHash ONNX export in an onnxruntime CPU session."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = _existing(path)
        self.metadata = read_onnx_metadata(self.path)
        self.context_length = int(self.metadata["config"]["context_length"])
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime's Fail / InvalidGraph / InvalidProtobuf ...
            raise OnnxModelError(f"{self.path}: onnxruntime cannot load it ({err})") from err
        self.outputs = tuple(o.name for o in self.session.get_outputs())

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, outputs: Sequence[str] = ("mean",)
    ) -> dict[str, np.ndarray]:
        """Pooled vectors ``{name: (B, D) float32}`` for a right-padded batch ``(B, L)``
        (``attention_mask``: 1 or True on tokens, 0 or False on padding)."""
        unknown = [name for name in outputs if name not in self.outputs]
        if unknown:
            raise ValueError(f"{self.path}: no output {', '.join(unknown)}; it has {', '.join(self.outputs)}")
        input_ids = np.asarray(input_ids)
        attention_mask = np.asarray(attention_mask)
        if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must both be (B, L)"
            )
        if input_ids.shape[1] > self.context_length:
            raise ValueError(f"batch of {input_ids.shape[1]} tokens exceeds the context length {self.context_length}")
        feed = {
            "input_ids": input_ids.astype(np.int64, copy=False),
            "attention_mask": attention_mask.astype(np.int64, copy=False),
        }
        values = self.session.run(list(outputs), feed)
        return dict(zip(outputs, values))


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    return path
