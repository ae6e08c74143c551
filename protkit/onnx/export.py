"""Export a ProtHash student to ONNX, with pooling and the adapter inside the graph.

Graph (opset 23, one file, weights inside):

- inputs ``input_ids`` (B, L) int64 and ``attention_mask`` (B, L) int64 (1 = token, 0 = padding),
  both with dynamic B and L (L at most ``context_length``);
- outputs, all float32 (B, D): ``cls``, ``mean``, ``max`` in the teacher's width and
  ``cls_native``, ``mean_native``, ``max_native`` in ``d_model``.

Pooling is :func:`protkit.sequences.pooling.pool` itself: ``cls`` is position 0; ``mean`` and ``max`` take
residues only (not CLS, EOS or padding; a sequence without residues gets zeros for ``mean`` and the
float32 minimum for ``max``). Teacher-width ``cls`` and ``mean`` are pooled first and adapted
after (the adapter is linear, so this equals adapting every token, as ``ProtHash.embed_teacher``
does, and is cheaper); ``max`` does not commute with the adapter, so it is taken over adapted
tokens (about 5% of the run time; leave ``max`` out of ``outputs`` to save it).

The graph runs the model's own blocks; only ``ProtHash.forward``'s data-dependent branch (no mask
when nothing is padded), which ``torch.export`` cannot trace, is replaced by an always-applied key
padding mask. Opset 23 gives ONNX's own ``Attention`` (grouped-query heads without repeating keys
and values) and ``RMSNormalization``; on 2 CPU cores this graph ran 5-10% faster in onnxruntime
than one spelling attention and RMSNorm out at opset 18. Padded positions never reach a real
position's output, so a protein gives the same vectors alone or in a padded batch (fp32).

protkit metadata (``metadata_props``, read back by :func:`protkit.onnx.session.read_onnx_metadata`):
``protkit.config`` (ProtHashConfig JSON), ``protkit.weights_sha256`` (the source weights'
sha256, if given), ``protkit.version``, ``protkit.outputs`` (JSON list), ``protkit.inputs``
(JSON: names and dtypes), ``protkit.precision`` (``fp32`` or ``int8_dynamic``) and, for int8,
``protkit.quantization`` (JSON: how).
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from protkit.io.atomic import atomic_path
from protkit.models.prothash.model import ProtHash
from protkit.sequences.pooling import POOLINGS, pool
from protkit.sequences.tokenize import CLS_ID, EOS_ID, PAD_ID, residue_mask
from protkit.version import VERSION

INPUTS = ("input_ids", "attention_mask")
OUTPUTS = (*POOLINGS, *(f"{p}_native" for p in POOLINGS))  # cls, mean, max, cls_native, mean_native, max_native
OPSET = 23  # Attention (grouped-query) and RMSNormalization ops; onnxruntime >= 1.23 runs them
META_PREFIX = "protkit."
INT8_METHOD = "int8_dynamic"
INT8_SETTINGS = {
    "tool": "onnxruntime.quantization.quantize_dynamic", "ops": ["MatMul", "Gemm"], "weights": "int8",
    "per_channel": True, "reduce_range": True, "activations": "uint8, per tensor, at run time",
}


class OnnxExportError(ValueError):
    """The model cannot be exported as asked; the message says why."""


class PooledStudent(nn.Module):
    """``(input_ids, attention_mask) -> pooled (B, D) tensors``, one per name in ``outputs``:
    ``model``'s own blocks, with the padding mask always applied."""

    def __init__(self, model: ProtHash, outputs: Sequence[str] = OUTPUTS):
        super().__init__()
        self.model = model
        self.outputs = tuple(outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        B, L = input_ids.shape
        keep = attention_mask != 0  # (B, L)
        # Padded keys hidden from every query; onnxruntime's Attention wants the query axis spelled out.
        mask = keep[:, None, None, :].expand(B, 1, L, L)  # (B, 1, L, L)
        x = model.token_embeddings(input_ids)  # (B, L, D)
        if model.position_embeddings is not None:
            x = x + model.position_embeddings.weight[:L]
        for block in model.blocks:
            x = block(x, mask)  # (B, L, D)
        return self._pool(x, input_ids, keep)

    def _pool(self, x: torch.Tensor, input_ids: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs named in ``self.outputs``, pooled by :func:`protkit.sequences.pooling.pool`.  # each (B, D)"""
        adapter, wanted = self.model.adapter, set(self.outputs)
        pooled = {}
        for name in POOLINGS:
            if {name, f"{name}_native"} & wanted:
                pooled[f"{name}_native"] = pool(x, input_ids, keep, name)  # (B, D)
        if "cls" in wanted:
            pooled["cls"] = adapter(pooled["cls_native"])  # (B, T)
        if "mean" in wanted:  # pool() gives 0 for a sequence without residues, adapter(0) may not
            has_residues = residue_mask(input_ids, keep).any(dim=1, keepdim=True)  # (B, 1)
            pooled["mean"] = torch.where(has_residues, adapter(pooled["mean_native"]), 0.0)  # (B, T)
        if "max" in wanted:  # max does not commute with the adapter: adapt every token first
            pooled["max"] = pool(adapter(x), input_ids, keep, "max")  # (B, T)
        return tuple(pooled[name] for name in self.outputs)


def export_onnx(
    model: ProtHash,
    path: str | Path,
    weights_sha256: str | None = None,
    outputs: Sequence[str] = OUTPUTS,
    int8: bool = False,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically) and return the path.

    ``weights_sha256``: sha256 of the weights file the model came from, stored as metadata so
    embeddings can name their model. ``outputs``: the pooled outputs to include (a subset of
    :data:`OUTPUTS`); leaving out ``max`` saves adapting every residue (about 5% of the time).
    ``int8``: write the int8 graph of :func:`quantize_onnx` instead of the fp32 one.
    """
    path = Path(path)
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown or not outputs or len(set(outputs)) != len(outputs):
        raise OnnxExportError(f"outputs must be distinct names among {', '.join(OUTPUTS)}; got {list(outputs)}")
    model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    graph = PooledStudent(model, outputs).eval()
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=model.config.context_length)
    dims = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), quiet_libraries():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph, _example_inputs(), dynamo=True, input_names=list(INPUTS), dynamic_shapes=dims,
                opset_version=OPSET, external_data=False, optimize=True, verbose=False,
            )
    except Exception as err:  # torch.export / onnxscript errors are long; keep the cause attached
        raise OnnxExportError(f"exporting ProtHash to ONNX for {path} failed: {err}") from err
    _name_outputs(program.model, outputs)
    metadata = {
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "version": VERSION,
        "outputs": json.dumps(list(outputs)),
        "inputs": json.dumps({"input_ids": "int64", "attention_mask": "int64"}),
        "precision": "fp32",
    }
    if weights_sha256 is not None:
        metadata["weights_sha256"] = weights_sha256
    if not int8:
        return _save(program.model_proto, path, metadata)
    with tempfile.TemporaryDirectory(prefix="protkit-onnx-") as tmp:
        fp32 = _save(program.model_proto, Path(tmp) / "fp32.onnx", metadata)
        return quantize_onnx(fp32, path)


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """Write an int8 copy of the fp32 export ``src`` at ``dst`` (atomically) and return ``dst``.

    onnxruntime dynamic quantization of every weight matmul (encoder linears and adapter):
    int8 weights, one scale per output channel, 7-bit range (``reduce_range``: without it the
    u8 x s8 kernels of AVX2 CPUs without VNNI saturate, and cosine to fp32 drops to ~0.96);
    activations are quantized to uint8 per tensor at run time, so a protein's vectors depend
    slightly on the batch it is in. Attention, norms and pooling stay fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    metadata = protkit_metadata(onnx.load(str(src)))
    if "config" not in metadata:
        raise OnnxExportError(f"{src}: no protkit metadata; quantize a file written by export_onnx")
    if metadata.get("precision", "fp32") != "fp32":
        raise OnnxExportError(f"{src} is already quantized; quantize the fp32 export")
    metadata["precision"] = INT8_METHOD
    metadata["quantization"] = json.dumps(INT8_SETTINGS, sort_keys=True)
    with tempfile.TemporaryDirectory(prefix="protkit-onnx-int8-") as tmp, quiet_libraries():
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            prepared, quantized, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True, reduce_range=True,
            weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True},
        )
        return _save(onnx.load(str(quantized)), dst, metadata)


def protkit_metadata(proto) -> dict[str, str]:
    """protkit's ``metadata_props`` of a loaded ONNX model, without the ``protkit.`` prefix."""
    return {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hold back the libraries' chatter while exporting: the exporter and onnxruntime's quantizer
    log every initializer and tensor at INFO (to the root logger), and the exporter warns about
    torchvision ops that a ProtHash graph never uses."""
    previous = logging.root.manager.disable
    exporter = logging.getLogger("torch.onnx")
    exporter_level = exporter.level
    logging.disable(max(previous, logging.INFO))
    exporter.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)
        exporter.setLevel(exporter_level)


def _save(proto, path: Path, metadata: dict[str, str]) -> Path:
    """Replace protkit's metadata in ``proto``, check it, and write it atomically to ``path``."""
    import onnx

    kept = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = META_PREFIX + key, value
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def _name_outputs(ir_model, names: Sequence[str]) -> None:
    """Name the graph outputs ``names``, first renaming intermediate values that already carry
    one of those names (the exporter names values after torch ops such as ``mean``)."""
    graph = ir_model.graph
    output_ids = set(map(id, graph.outputs))
    for node in graph.all_nodes():
        for value in node.outputs:
            if value.name in OUTPUTS and id(value) not in output_ids:
                value.name = f"{value.name}_inner"
    for value, name in zip(graph.outputs, names, strict=True):
        value.name = name


def _example_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A padded (2, 6) batch: sizes above 1 so torch.export keeps both axes dynamic."""
    ids = torch.tensor([[CLS_ID, 5, 6, 7, 8, EOS_ID], [CLS_ID, 5, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])  # (2, 6)
    return ids, (ids != PAD_ID).long()
