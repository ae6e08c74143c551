"""PNG figures written atomically: the one writer of every plot protkit draws (evaluation, search
maps, fine-tuning curves), with matplotlib's object API (a ``Figure`` on the Agg canvas, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from protkit.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120


def save_figure(fig: Figure, path: str | Path) -> None:
    """``fig`` as a PNG at ``path`` (written beside it, then renamed), trimmed to its contents."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
