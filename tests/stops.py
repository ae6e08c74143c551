"""Stopping a training run part-way, as a kill would: an ``on_step`` callback that raises after a step."""

from __future__ import annotations

from typing import Callable


class Killed(Exception):
    """Raised by :func:`kill_at`'s callback."""


def kill_at(step: int) -> Callable[[int], None]:
    """An ``on_step(done)`` that raises :class:`Killed` once ``step`` optimizer steps are done."""

    def on_step(done: int) -> None:
        if done == step:
            raise Killed(step)

    return on_step
