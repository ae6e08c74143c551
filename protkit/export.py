"""``protkit export``: a trained student in the ``prothash`` package's format or as ONNX, or a
student or the teacher as a self-contained Hugging Face model directory."""

from __future__ import annotations

import logging
from pathlib import Path

from protkit.io.digests import file_sha256
from protkit.io.outputs import claim_outputs
from protkit.models.names import WEIGHTS_FILE
from protkit.models.prothash.checkpoint import ModelFormatError
from protkit.models.prothash.convert import export_prothash
from protkit.models.prothash.model import load_pretrained_dir
from protkit.models.prothash_v1.checkpoint import detect_v1_format, export_prothash_v1
from protkit.models.prothash_v1.model import load_staged_dir
from protkit.models.resolve import ModelKind, classify_model

log = logging.getLogger(__name__)

FORMATS = ("prothash", "onnx", "hf")


def export_model(model: str | Path, fmt: str, output: str | Path, int8: bool = False) -> Path:
    """Export the fp32 student ``model`` (directory or Hub id) as ``fmt`` to ``output``.

    ``prothash``: a directory for ``prothash.model.ProtHash.from_pretrained`` (see
    :func:`~protkit.models.prothash.convert.export_prothash`), or for a ProtHash 1.0 student the 1.0
    package's ``ESMCProtHash`` (:func:`~protkit.models.prothash_v1.checkpoint.export_prothash_v1`). ``onnx``: one ``.onnx`` file (see
    :mod:`protkit.onnx.export`); ``int8`` adds the int8 weight quantization shipped for ONNX.
    ``hf``: a Hugging Face directory (:mod:`protkit.hf.export`), of a student or of the ESMC teacher.
    """
    if fmt not in FORMATS:
        raise ModelFormatError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if int8 and fmt != "onnx":
        raise ModelFormatError(f"--int8 applies to --format onnx only; the {fmt} format stores float weights")
    if fmt == "hf":
        from protkit.hf.export import export_hf

        out = export_hf(model, output)
        log.info("exported %s as a Hugging Face model to %s", model, out)
        return out
    found = classify_model(model)
    if found.kind == ModelKind.INT8:
        raise ModelFormatError(
            f"{found.path}: an int8 artifact; export the fp32 model directory it was made from "
            f"(the parent of int8/){' and add --int8 for an int8 ONNX' if fmt == 'onnx' else ''}"
        )
    if found.kind != ModelKind.STUDENT:
        raise ModelFormatError(f"{model}: only ProtHash students can be exported (this is {found.kind.value})")
    claim = claim_outputs(directories=[output], inputs=[found.path]) if fmt == "prothash" else \
        claim_outputs([output], inputs=[found.path])
    with claim:
        staged = detect_v1_format(found.path) is not None  # a ProtHash 1.0 (four-stage) student
        if staged and fmt != "prothash":
            raise ModelFormatError(f"{found.path}: a ProtHash 1.0 (four-stage) student exports to --format prothash "
                                   f"only (the prothash 1.0 package's format), not {fmt} yet")
        if fmt == "prothash":
            out = export_prothash_v1(load_staged_dir(found.path), output) if staged else \
                export_prothash(found.path, output)
        else:
            from protkit.onnx.export import export_onnx

            weights = found.path / WEIGHTS_FILE
            out = export_onnx(load_pretrained_dir(found.path), output, weights_sha256=file_sha256(weights), int8=int8)
    log.info("exported %s as %s to %s", model, fmt, out)
    return Path(out)
