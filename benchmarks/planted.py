"""Planted near-duplicates: copies of real proteins mutated to a known percent identity.

A copy is made from its source by an edit script of substitutions (to a different amino acid,
uniform over the other 19) and short indels (1-3 residues, insertions and deletions equally
likely; ``indel_share`` of the edits). Edits never overlap, so the script is also an alignment
of copy and source, and the copy's identity is measured from it: identical aligned positions
over the length of the longer sequence. Edits stop at the step closest to the level, so the
identity is within half a residue of it (0.5 points for 100 residues).

    copies = plant_copies([(p.id, p.sequence) for p in proteins], per_level=100, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from protkit.sequences import fasta

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
LEVELS = (0.98, 0.95, 0.90, 0.80)
MAX_INDEL = 3  # residues
MATCH, SUBSTITUTED, DELETED = 0, 1, 2  # states of a source position

__all__ = ["AMINO_ACIDS", "LEVELS", "Planted", "plant_copies", "mutate", "planted_id", "write_fasta"]


@dataclass(frozen=True)
class Planted:
    id: str  # "{source_id}|planted{level%}|{n}"
    source_id: str
    level: float  # target identity, 0..1
    identity: float  # measured: identical aligned positions / length of the longer sequence
    sequence: str


def planted_id(source_id: str, level: float, n: int) -> str:
    """The copy's FASTA id: no spaces, unique per source, level and copy number."""
    return f"{source_id}|planted{round(level * 100)}|{n}"


def plant_copies(
    proteins: Sequence[tuple[str, str]],
    levels: Sequence[float] = LEVELS,
    per_level: int = 100,
    seed: int = 0,
    indel_share: float = 0.2,
) -> list[Planted]:
    """``per_level`` copies at each identity level of ``(id, sequence)`` proteins, deterministic for a seed.

    Every copy has a different source (``per_level * len(levels)`` distinct proteins, a seeded
    choice), so a source has exactly one copy.
    """
    needed = per_level * len(levels)
    if needed > len(proteins):
        raise ValueError(f"{needed} copies need as many distinct sources; only {len(proteins)} proteins given")
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(proteins), size=needed, replace=False)
    copies = []
    for index, source in enumerate(sources):
        level = levels[index // per_level]
        source_id, sequence = proteins[source]
        copy, identity = mutate(sequence, level, rng, indel_share)
        copies.append(Planted(planted_id(source_id, level, index % per_level), source_id, level, identity, copy))
    return copies


def mutate(sequence: str, level: float, rng: np.random.Generator, indel_share: float = 0.2) -> tuple[str, float]:
    """``sequence`` edited to about ``level`` identity: ``(copy, measured identity)``."""
    length = len(sequence)
    state = np.full(length, MATCH)
    replaced: dict[int, str] = {}  # position -> new residue
    inserted: dict[int, str] = {}  # residues inserted before position (length: at the end)
    matches, copy_length = length, length

    def identity(matches: int, copy_length: int) -> float:
        return matches / max(length, copy_length)

    def free_run(start: int, size: int) -> bool:  # untouched positions start..start+size-1
        return start + size <= length and bool((state[start:start + size] == MATCH).all())

    while identity(matches, copy_length) - level > 0.5 / max(length, copy_length):
        size = int(rng.integers(1, MAX_INDEL + 1))
        if rng.random() < indel_share:
            start = int(rng.integers(0, length + 1))
            if rng.random() < 0.5:  # deletion of size residues
                if free_run(start, size) and identity(matches - size, copy_length - size) >= level - 0.5 / length:
                    state[start:start + size] = DELETED
                    matches, copy_length = matches - size, copy_length - size
                continue
            if start not in inserted and identity(matches, copy_length + size) >= level - 0.5 / length:
                inserted[start] = "".join(rng.choice(list(AMINO_ACIDS), size))
                copy_length += size
            continue
        position = int(rng.integers(0, length))
        if state[position] == MATCH:
            others = [a for a in AMINO_ACIDS if a != sequence[position]]
            replaced[position] = str(rng.choice(others))
            state[position] = SUBSTITUTED
            matches -= 1
    pieces = []
    for position, residue in enumerate(sequence):
        pieces.append(inserted.get(position, ""))
        if state[position] != DELETED:
            pieces.append(replaced.get(position, residue))
    pieces.append(inserted.get(length, ""))
    copy = "".join(pieces)
    assert len(copy) == copy_length
    return copy, identity(matches, copy_length)


def write_fasta(records: Iterable[tuple[str, str]], path: str | Path) -> None:
    """``(id, sequence)`` records as FASTA (protkit's atomic writer)."""
    fasta.write_fasta(list(records), path)
