"""Argument types of the ``protkit`` command line: each refuses a bad value with a message naming it."""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

from protkit.search.lsh import BIT_CHOICES
from protkit.sequences.pooling import EMBED_POOLINGS

Number = TypeVar("Number", int, float)


def checked(convert: Callable[[str], Number], what: str, accept: Callable[[Number], bool]) -> Callable[[str], Number]:
    """An argument type: ``convert(text)`` when ``accept`` takes it (NaN never does), else an error
    saying what was expected."""
    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type by it
    return parse


positive_int = checked(int, "a positive integer", lambda v: v >= 1)
non_negative_int = checked(int, "0 or a positive integer", lambda v: v >= 0)
positive_float = checked(float, "a positive number", lambda v: v > 0)
cosine = checked(float, "a cosine in [-1, 1]", lambda v: -1.0 <= v <= 1.0)


def fraction_up_to(limit: float) -> Callable[[str], float]:
    return checked(float, f"a fraction from 0 to {limit}", lambda v: 0.0 <= v <= limit)


def code_bits(text: str) -> int:
    value = positive_int(text)
    if value % 8 or not 64 <= value <= 4096:
        raise argparse.ArgumentTypeError(
            f"expected a multiple of 8 from 64 to 4096 (e.g. {', '.join(map(str, BIT_CHOICES))}), got {text!r}")
    return value


def pooling_list(text: str) -> list[str]:
    """Comma-separated pooling names, de-duplicated in order."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in EMBED_POOLINGS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"choose one or more of {', '.join(EMBED_POOLINGS)} (comma-separated), got {text!r}")
    return list(dict.fromkeys(names))
