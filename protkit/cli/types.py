"""Argument types of the ``protkit`` command line: each refuses a bad value with a message naming it."""

from __future__ import annotations

import argparse

from protkit.search.lsh import BIT_CHOICES
from protkit.sequences.pooling import POOLINGS


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cosine(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a cosine in [-1, 1], got {text!r}")
    return value


def code_bits(text: str) -> int:
    value = positive_int(text)
    if value % 8 or not 64 <= value <= 4096:
        raise argparse.ArgumentTypeError(
            f"expected a multiple of 8 from 64 to 4096 (e.g. {', '.join(map(str, BIT_CHOICES))}), got {text!r}")
    return value


def pooling_list(text: str) -> list[str]:
    """Comma-separated pooling names, de-duplicated in order."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in POOLINGS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"choose one or more of {', '.join(POOLINGS)} (comma-separated), got {text!r}")
    return list(dict.fromkeys(names))
