"""TensorBoard scalars when the ``tensorboard`` package is there, a warning and nothing otherwise.

Training runs log their curves for TensorBoard; a machine without the package (a GPU image without a
registry, a slim container) still trains, with the curves in the run's own metrics files only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class NoWriter:
    """Stands in for ``SummaryWriter`` when ``tensorboard`` is not installed: every call does nothing."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def scalar_writer(directory: str | Path, purge_step: int | None = None) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``directory``, or :class:`NoWriter` (with one
    warning) when the ``tensorboard`` package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("the tensorboard package is not installed: no TensorBoard logs in %s "
                    "(pip install tensorboard to get them)", directory)
        return NoWriter()
    return SummaryWriter(str(directory), purge_step=purge_step)
