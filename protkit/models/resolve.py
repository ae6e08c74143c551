"""What a ``--model`` argument names, and loading it with errors that name the file.

Kinds: an ESMC teacher (preset name, weights file or Hub-like directory), a ProtHash student
directory (protkit's or the ``prothash`` package's format, 0.x or 1.0), an int8 student artifact, or
an ONNX file. Every failure a user can fix (missing, corrupt or foreign files) raises
:class:`~protkit.models.prothash.checkpoint.ModelFormatError` or ``FileNotFoundError`` with a message
that names the file and says what to do; library exceptions are caught here, where the file is known.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from protkit.io.digests import file_sha256
from protkit.models.esmc.weights import HUB_WEIGHTS, resolve_weights
from protkit.models.hub import hub_fetch
from protkit.models.names import CONFIG_FILE, INT8_SUBDIR, QUANT_FILE, WEIGHTS_FILE
from protkit.models.prothash.checkpoint import ModelFormatError, format_label
from protkit.models.prothash.model import ProtHash, load_pretrained_dir
from protkit.models.prothash_v1.checkpoint import detect_v1_format
from protkit.models.prothash_v1.model import StagedProtHash, load_staged_dir

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


class ModelKind(enum.Enum):
    TEACHER = "teacher"
    STUDENT = "student"
    INT8 = "int8"
    ONNX = "onnx"


@dataclass(frozen=True)
class FoundModel:
    kind: ModelKind
    path: Path  # weights file (teacher), directory (student, int8) or .onnx file
    source: str  # as given


@dataclass
class LoadedStudent:
    model: ProtHash | StagedProtHash
    fingerprint: str  # sha256 of the weights file
    quantization: str | None
    format: str  # "protkit", "prothash-0.2", "prothash-0.1", "protkit-int8"; ProtHash 1.0: "protkit-v1", "prothash-1.0"


def classify_model(model: str | Path) -> FoundModel:
    """What ``model`` names (see the module docstring); FileNotFoundError / ModelFormatError if nothing usable."""
    source = str(model)
    if source in HUB_WEIGHTS:
        return FoundModel(ModelKind.TEACHER, resolve_weights(source), source)
    path = Path(model)
    if path.is_file():
        return FoundModel(_file_kind(path), path, source)
    if path.is_dir():
        return FoundModel(*_directory_kind(path), source)
    if path.exists() or not HUB_ID.match(source):
        raise FileNotFoundError(
            f"model {source!r}: no such file or directory, not a Hugging Face Hub id (org/name), "
            f"and not one of {', '.join(HUB_WEIGHTS)}"
        )
    snapshot = _download(source)
    return FoundModel(*_directory_kind(snapshot), source)


def _file_kind(path: Path) -> ModelKind:
    if path.suffix == ".onnx":
        return ModelKind.ONNX
    if path.suffix in WEIGHT_SUFFIXES:
        return ModelKind.TEACHER
    if path.name in (CONFIG_FILE, QUANT_FILE):
        raise ModelFormatError(f"{path}: pass the model's directory ({path.parent}), not one of its files")
    raise ModelFormatError(
        f"{path}: unknown model file type {path.suffix or '(no suffix)'!r}; expected a model directory, "
        f"an ESMC weights file ({', '.join(WEIGHT_SUFFIXES)}) or an .onnx file"
    )


def _directory_kind(directory: Path) -> tuple[ModelKind, Path]:
    if (directory / QUANT_FILE).is_file():
        return ModelKind.INT8, directory
    if (directory / CONFIG_FILE).is_file():
        return ModelKind.STUDENT, directory
    try:
        return ModelKind.TEACHER, resolve_weights(directory)
    except FileNotFoundError:
        raise ModelFormatError(
            f"{directory}: not a model directory: expected config.json + model.safetensors (a ProtHash "
            f"student), {QUANT_FILE} (an int8 student) or ESMC weights (data/weights/*.pth, *.safetensors)"
        ) from None


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [CONFIG_FILE, WEIGHTS_FILE, f"{INT8_SUBDIR}/*", "data/weights/*.pth"]
    try:
        return hub_fetch(snapshot_download, repo_id=repo_id, allow_patterns=patterns)
    except Exception as err:  # network, auth, missing repo: all user-fixable
        raise FileNotFoundError(
            f"model {repo_id!r}: not a local directory, and fetching it from the Hugging Face Hub failed "
            f"({type(err).__name__}: {err}); with HF_HUB_OFFLINE=1 the model must be in the Hub cache"
        ) from err


def load_student(found: FoundModel, int8: bool = False) -> LoadedStudent:
    """The student ``found`` names, fp32 or int8 (``int8``: its ``int8/`` artifact, else quantized now)."""
    directory = found.path
    if found.kind == ModelKind.INT8:
        return _load_int8(directory)
    if found.kind != ModelKind.STUDENT:
        raise ModelFormatError(f"{found.source}: not a ProtHash student ({found.kind.value})")
    v1 = detect_v1_format(directory)
    if v1 is not None:  # a ProtHash 1.0 student (StagedProtHash)
        if int8:
            raise ModelFormatError(f"{found.source}: a ProtHash 1.0 student; int8 is not available for it, "
                                   "it runs in fp32 (or bf16/fp16): drop --int8")
        return LoadedStudent(load_staged_dir(directory), file_sha256(directory / WEIGHTS_FILE), None, v1)
    if int8 and (directory / INT8_SUBDIR / QUANT_FILE).is_file():
        return _load_int8(directory / INT8_SUBDIR)
    net = load_pretrained_dir(directory)
    fingerprint = file_sha256(directory / WEIGHTS_FILE)
    fmt = format_label(directory)
    if not int8:
        return LoadedStudent(net, fingerprint, None, fmt)
    from protkit.models.prothash.int8 import quantize_model

    log.warning("%s has no %s/ artifact; quantizing the fp32 model now (int8_dynamic)", found.source, INT8_SUBDIR)
    return LoadedStudent(quantize_model(net), fingerprint, "int8_dynamic", fmt)


def _load_int8(directory: Path) -> LoadedStudent:
    from protkit.models.prothash.int8 import load_quantized, read_quantization_info

    info = read_quantization_info(directory)
    weights = directory / info["weights"]
    try:
        net = load_quantized(directory)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated or foreign model.pt, torchao mismatch
        raise ModelFormatError(
            f"{weights}: cannot load the int8 artifact ({type(err).__name__}: {err}); "
            f"re-create it with the quantize rule or protkit.quantize.quantize_pretrained"
        ) from None
    return LoadedStudent(net, file_sha256(weights), info["method"], "protkit-int8")


def load_teacher_weights(path: Path, device: torch.device, dtype: torch.dtype):
    """An eval-mode ESMC from a weights file, with file-naming errors for corrupt or foreign files."""
    from protkit.models.esmc.weights import load_esmc

    try:
        return load_esmc(path, device=device, dtype=dtype)
    except FileNotFoundError:
        raise
    except KeyError as err:
        raise ModelFormatError(f"{path}: not ESMC weights (no tensor {err}); for a ProtHash student pass its directory") from None
    except Exception as err:  # safetensors/torch.load errors, unpickling refused, shape mismatch
        raise ModelFormatError(
            f"{path}: cannot read ESMC weights ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            f"is the file complete? download it again"
        ) from None
