"""Logging set-up for workflow scripts: everything (logging and stderr) goes to the rule's log file.

:func:`quiet_import_noise` drops what torchao and torch log when torchao is imported on a machine
without torchao's optional kernels; protkit's entry points (the ``protkit`` command, :func:`to_file`
for workflow jobs) call it, so a library user's own logging is left alone."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

# Logger -> the exact messages dropped: torchao's optional kernels that a CPU build or another GPU lacks
# (mxfp8, CUTLASS for sm90a, Triton), and torch's deprecation of register_constant() on an Enum, which
# torchao calls for its KernelPreference and (when QAT prepares a model) ScaleCalculationMode. Anything else
# these loggers say still shows.
IMPORT_NOISE: dict[str, tuple[re.Pattern[str], ...]] = {
    "torchao": (re.compile(r"^Failed to load \S*torchao/_C_(mxfp8|cutlass_90a)[^/\s]*\.so: "),),
    "torchao.kernel.intmm": (
        re.compile(r"^Warning: Detected no triton, on systems without Triton certain kernels will not work$"),
    ),
    "torch.utils._pytree": (
        re.compile(r"^<enum '(KernelPreference|ScaleCalculationMode)'> is an Enum subclass and is now natively supported by torch\.compile "
                   r"as an opaque value type\. Calling register_constant\(\) on Enum subclasses is deprecated"),
    ),
}


class ImportNoise(logging.Filter):
    """Drops a logger's records whose message matches one of ``patterns``."""

    def __init__(self, patterns: tuple[re.Pattern[str], ...]) -> None:
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_import_noise() -> None:
    """Drop :data:`IMPORT_NOISE` at its loggers (once; before or after the libraries are imported)."""
    for name, patterns in IMPORT_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, ImportNoise) for f in logger.filters):
            logger.addFilter(ImportNoise(patterns))


def to_file(log_path: str | Path) -> None:
    """Send logging records and stderr (tracebacks, warnings, progress bars) to ``log_path``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(log_path, "w", buffering=1, encoding="utf-8")
    sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=stream,
        force=True,
    )
    logging.captureWarnings(True)
    quiet_import_noise()


def start_job(log_path: str | Path, threads: int, faiss: bool = False) -> None:
    """Start a workflow job: log to ``log_path`` and let torch (and, with ``faiss``, FAISS's OpenMP
    pool) use only the job's ``threads`` CPUs (on a shared SLURM node they would otherwise spread
    over every core)."""
    import torch

    to_file(log_path)
    torch.set_num_threads(max(1, int(threads)))
    if faiss:
        import faiss as faiss_module

        faiss_module.omp_set_num_threads(max(1, int(threads)))
