"""From FASTA records to the rows an embedding run embeds: the alphabet and over-length policies,
shards of a file, and parts (the unit of resume)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from protkit.embed.embedder import EmbedError
from protkit.sequences.alphabet import NucleotideCounter, check_alphabet, clean_sequence
from protkit.sequences.fasta import FastaRecord, read_fasta
from protkit.sequences.tokenize import max_residues, token_count

log = logging.getLogger(__name__)
TRUNCATION_WARNING_SHARE = 0.01  # warn when more than this share of the rows is truncated


@dataclass
class Row:
    """A record to embed."""

    position: int  # 0-based position in the FASTA file
    record: FastaRecord
    sequence: str  # cleaned, not truncated
    truncated: bool
    description: str | None = None  # the header's text after the id


def header_description(record: FastaRecord) -> str | None:
    """The header's text after the id, ``None`` when there is none (``record.description`` holds the
    whole header, id included)."""
    parts = record.description.split(maxsplit=1)
    return parts[1] if len(parts) == 2 else None


@dataclass
class Plan:
    """The rows to embed and the records left out (with why)."""

    rows: list[Row] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    n_records: int = 0

    @property
    def described(self) -> bool:
        """Whether any row's header has text after the id (the output then has a ``description`` column)."""
        return any(row.description for row in self.rows)


def shard_records(
    fasta: str | Path | Iterable[FastaRecord], index: int, count: int
) -> list[tuple[int, FastaRecord]]:
    """``(position, record)`` for the records whose 0-based position ``i`` has ``i % count == index``."""
    if count < 1 or not 0 <= index < count:
        raise EmbedError(f"shard index must be in 0..count-1 with count >= 1, got {index} of {count}")
    records = read_fasta(fasta) if isinstance(fasta, (str, Path)) else fasta
    return [(i, r) for i, r in enumerate(records) if i % count == index]


def plan_records(
    records: Sequence[tuple[int, FastaRecord]], source: str, max_length: int, overlength: str, alphabet: str,
    sharded: bool = False,
) -> Plan:
    """Apply the alphabet and over-length policies; refuse nucleotide files and (unless ``sharded``:
    a shard may hold nothing) files with nothing left to embed."""
    plan = Plan(n_records=len(records))
    nucleotides = NucleotideCounter()
    for position, record in records:
        sequence = clean_sequence(record.sequence)
        nucleotides.add(sequence)
        problem = check_alphabet(sequence)
        if problem is not None:
            reason, detail = problem
            if alphabet == "error":
                raise EmbedError(f"{source} line {record.line}, id {record.id}: {detail} (alphabet policy: error; "
                                 f"'reject' skips such records)")
            plan.rejected.append({"id": record.id, "line": record.line, "reason": reason, "detail": detail})
            continue
        over = token_count(len(sequence)) > max_length
        if over and overlength == "error":
            raise EmbedError(
                f"{source} line {record.line}, id {record.id}: {len(sequence)} residues "
                f"({token_count(len(sequence))} tokens with CLS/EOS) exceed max_length {max_length} tokens; use "
                f"overlength 'truncate' or 'drop', or a larger max_length (at most the model's context length)"
            )
        if over and overlength == "drop":
            plan.dropped.append({"id": record.id, "line": record.line, "residues": len(sequence)})
            continue
        plan.rows.append(Row(position, record, sequence, over, header_description(record)))
    if nucleotides.looks_like_nucleotides():
        raise EmbedError(
            f"{source}: looks like DNA/RNA, not protein ({nucleotides.share:.0%} of the first "
            f"{nucleotides.residues:,} letters are A/C/G/T/U/N); translate the genes to protein first"
        )
    for kind, items in (("rejected (not amino acids)", plan.rejected), ("dropped (over-long)", plan.dropped)):
        if items:
            log.warning("%s: %d record(s) %s, e.g. %s", source, len(items), kind,
                        "; ".join(f"line {d['line']}, id {d['id']}" + (f": {d['detail']}" if "detail" in d else "")
                                  for d in items[:5]))
    warn_truncation(plan, source, max_length)
    if not plan.rows and plan.n_records and not sharded:
        raise EmbedError(f"{source}: no record left to embed ({len(plan.rejected)} rejected, "
                         f"{len(plan.dropped)} dropped of {plan.n_records})")
    return plan


def warn_truncation(plan: Plan, source: str, max_length: int) -> None:
    """One WARNING when more than :data:`TRUNCATION_WARNING_SHARE` of the rows are truncated: count,
    share and what to do instead."""
    truncated = sum(row.truncated for row in plan.rows)
    if not plan.rows or truncated <= TRUNCATION_WARNING_SHARE * len(plan.rows):
        return
    limit, share = max_residues(max_length), truncated / len(plan.rows)
    log.warning(
        "%s: %s of %s proteins (%s) are longer than the %s residues the model reads (max_length %d tokens) "
        "and are truncated to their first %s; pass --overlength drop to leave them out or --overlength error to "
        "stop at them, or use a model with a longer context", source, f"{truncated:,}", f"{len(plan.rows):,}",
        f"{share:.0%}" if share >= 0.1 else f"{share:.1%}", f"{limit:,}", max_length, f"{limit:,}")


def group_parts(rows: Sequence[Row], chunk_residues: int) -> list[list[Row]]:
    """Consecutive rows grouped into parts of about ``chunk_residues`` residues."""
    parts: list[list[Row]] = [[]]
    size = 0
    for row in rows:
        if parts[-1] and size + len(row.sequence) > chunk_residues:
            parts.append([])
            size = 0
        parts[-1].append(row)
        size += len(row.sequence)
    return parts
