"""Progress of long work: a tqdm bar on a terminal, periodic log lines everywhere else.

A SLURM job's stderr is a file, where a bar is either hidden (tqdm's ``disable=None``) or a wall of
carriage returns. :func:`progress_bar` gives the same tqdm object either way; off a terminal it
writes one INFO line to the ``protkit.progress`` logger at the start, at most every
``PROTKIT_PROGRESS_SECONDS`` seconds (default 30) and at the end::

    embed PKSI.faa: 250k/1.2M res (21%), 4.1k res/s, elapsed 01:01, ETA 03:52
"""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import Iterable

from tqdm import tqdm

INTERVAL_VARIABLE = "PROTKIT_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0  # seconds between progress lines in a log
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, ETA {remaining}"
LOG_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit}, {rate_fmt}, elapsed {elapsed}"

log = logging.getLogger("protkit.progress")


class LogLines(io.TextIOBase):
    """A text stream that logs each non-empty line tqdm writes (its carriage returns dropped)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def write(self, text: str) -> int:
        for line in text.replace("\r", "\n").splitlines():
            if line.strip():
                self.logger.info(line.strip())
        return len(text)

    def flush(self) -> None:
        pass


class LoggedBar(tqdm):
    """tqdm off a terminal: a postfix waits for the next timed line (tqdm would otherwise refresh, so log
    a line, on every ``set_postfix`` call: once a step in a training loop)."""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)


def interval_seconds() -> float:
    """Seconds between progress lines in a log (``PROTKIT_PROGRESS_SECONDS``, default 30)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", None)) and sys.stderr.isatty()


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
                 initial: float = 0, unit_scale: bool = False, disable: bool = False) -> tqdm:
    """A tqdm bar (``update``, ``set_postfix_str``, ``close``, a context manager, iterable) drawn on a
    terminal and logged as lines elsewhere (module docstring); ``disable`` hides it either way."""
    common = dict(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale, disable=disable)
    if on_terminal():
        return tqdm(iterable, **common)
    bar_format = LOG_FORMAT if total else LOG_FORMAT_NO_TOTAL
    return LoggedBar(iterable, **common, file=LogLines(log), mininterval=interval_seconds(), miniters=1,
                     bar_format=bar_format, ascii=True, dynamic_ncols=False)
