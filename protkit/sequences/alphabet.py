"""The protein alphabet: which letters protkit embeds, and whether a file looks like DNA/RNA.

Shared by the data stage (:mod:`protkit.data`) and ``protkit embed`` so both apply one policy:
the 20 standard amino acids plus ``X B Z U O``; a terminal ``*`` (stop codon) is stripped and
lower case is upper-cased before the check.
"""

from __future__ import annotations

STANDARD = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard amino acids
AMBIGUOUS = "XBZUO"  # unknown, Asx, Glx, selenocysteine, pyrrolysine
AMINO_ACIDS = frozenset(STANDARD + AMBIGUOUS)
ALPHABET_POLICIES = ("reject", "error")
NUCLEOTIDES = frozenset("ACGTUN")
# A protein file is refused as DNA/RNA when at least this share of its first residues is A/C/G/T/U/N.
# Real proteomes sit near 0.3 (A, G, T, N, C are common amino acids); nucleotide files near 1.0.
NUCLEOTIDE_SHARE = 0.9
NUCLEOTIDE_MIN_RESIDUES = 100  # too few letters to tell: never refused
# One record of at least this many letters, every one of them A/C/G/T/U/N, is read as DNA/RNA: a protein
# made of only alanine, cysteine, glycine, threonine, selenocysteine and asparagine is not a real one.
NUCLEOTIDE_RECORD_LETTERS = 20
_NUCLEOTIDE_LETTERS = "".join(sorted(NUCLEOTIDES))


def clean_sequence(sequence: str) -> str:
    """Upper-case and drop terminal stop codons ``*``."""
    return sequence.upper().rstrip("*")


def looks_like_nucleotides(sequence: str) -> bool:
    """True for a record of at least :data:`NUCLEOTIDE_RECORD_LETTERS` letters, all A/C/G/T/U/N."""
    return len(sequence) >= NUCLEOTIDE_RECORD_LETTERS and not sequence.upper().strip(_NUCLEOTIDE_LETTERS)


def check_alphabet(sequence: str) -> tuple[str, str] | None:
    """``(reason, description)`` of the first problem in an upper-cased sequence, or None: a letter
    that is not an amino acid, or a record that reads as DNA/RNA (:func:`looks_like_nucleotides`)."""
    if looks_like_nucleotides(sequence):
        return "nucleotide", (f"all {len(sequence)} letters are A/C/G/T/U/N: a DNA/RNA sequence, not a protein; "
                              "translate it first")
    for position, char in enumerate(sequence, start=1):
        if char in AMINO_ACIDS:
            continue
        if char == "*":
            return "internal_stop", f"internal stop '*' at residue {position}"
        kind = "letter" if char.isalpha() else "character"
        return "invalid_character", f"{kind} {char!r} at residue {position} is not an amino acid"
    return None


class NucleotideCounter:
    """Counts A/C/G/T/U/N among the first ``limit`` residues fed to it."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self.residues = 0
        self.nucleotides = 0

    def add(self, sequence: str) -> None:
        if self.residues >= self.limit:
            return
        part = sequence[: self.limit - self.residues].upper()
        self.residues += len(part)
        self.nucleotides += sum(part.count(c) for c in NUCLEOTIDES)

    @property
    def share(self) -> float:
        return self.nucleotides / self.residues if self.residues else 0.0

    def looks_like_nucleotides(self) -> bool:
        """True when enough letters were seen and nearly all of them are nucleotide letters."""
        return self.residues >= NUCLEOTIDE_MIN_RESIDUES and self.share >= NUCLEOTIDE_SHARE
