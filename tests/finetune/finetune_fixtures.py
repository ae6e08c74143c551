"""Helpers of the fine-tuning tests: synthetic labelled proteins whose labels follow from their
residues (learnable in seconds by a tiny random student)."""

from __future__ import annotations

import random
from pathlib import Path

from protkit.sequences.fasta import write_fasta

HYDROPHOBIC = "AILMFVW"
POLAR = "CDEGHKNPQRSTY"
FAST = ["--device", "cpu", "--lr", "5e-3"]  # a random tiny student learns in a few epochs at this rate


def random_protein(rng: random.Random, hydrophobic_share: float, low: int = 40, high: int = 120) -> str:
    """A random sequence whose residues are hydrophobic with probability ``hydrophobic_share``."""
    return "".join(rng.choice(HYDROPHOBIC if rng.random() < hydrophobic_share else POLAR)
                   for _ in range(rng.randint(low, high)))


def membrane_like(n: int, seed: int) -> list[tuple[str, str, str]]:
    """``(id, sequence, label)``: ``M`` proteins are rich in hydrophobic residues, ``S`` proteins poor."""
    rng = random.Random(seed)
    proteins = []
    for i in range(n):
        label = "M" if i % 2 else "S"
        proteins.append((f"p{seed}_{i}", random_protein(rng, 0.6 if label == "M" else 0.25), label))
    return proteins


def write_labelled_fasta(proteins: list[tuple[str, str, str]], path: Path) -> Path:
    """FASTA with headers ``>ID loc-LABEL`` (label regex :data:`LABEL_REGEX`)."""
    write_fasta([(f"{pid} loc-{label}", sequence) for pid, sequence, label in proteins], path)
    return path


LABEL_REGEX = r"^\S+\s+\S+-([MS])\b"  # DeepLoc's headers: '>Q9H400 Cell.membrane-M test'


def per_residue_labels(sequence: str) -> str:
    """``H`` for a hydrophobic residue, ``-`` otherwise."""
    return "".join("H" if residue in HYDROPHOBIC else "-" for residue in sequence)
