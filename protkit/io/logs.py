"""Logging set-up for workflow scripts: everything (logging and stderr) goes to the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


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
