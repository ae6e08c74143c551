"""ProtHash as ONNX: the export (:mod:`.export`, pooling and adapter inside the graph, optional int8)
and an onnxruntime CPU session of an exported file (:mod:`.session`)."""

from protkit.onnx.export import OUTPUTS, OnnxExportError, export_onnx, quantize_onnx
from protkit.onnx.session import OnnxModelError, OrtStudent, read_onnx_metadata

__all__ = ["OUTPUTS", "OnnxExportError", "OnnxModelError", "OrtStudent", "export_onnx", "quantize_onnx",
           "read_onnx_metadata"]
