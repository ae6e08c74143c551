"""Training data: download/read protein sequences, clean and filter them, split by sequence hash.

Output (see docs/design.md): ``sequences.parquet`` with columns ``id``, ``sequence``, ``length``,
``split``, ``aliases`` and a ``filter_report.json`` beside it.

Rules applied by :func:`filter_and_split` and :func:`filter_split_files`, in this order for every record:

1. clean: upper-case, strip trailing ``*`` (stop codons written by gene callers);
2. alphabet: the 20 standard amino acids plus ``X B Z U O``; an internal ``*`` is reason
   ``internal_stop``, any other character (``J``, digits, gaps ``-``/``.``) is ``invalid_character``,
   a record of 20 letters or more that are all A/C/G/T/U/N is ``nucleotide`` (DNA/RNA);
   policy ``reject`` drops the record (logged, counted), ``error`` raises :class:`DataError`;
3. length window in residues: shorter than ``min_length`` -> ``too_short``; longer than
   ``max_length`` -> kept as its first ``max_length`` residues (``truncate``) or ``too_long`` (``drop``);
4. exact duplicates of the cleaned (truncated) sequence: the first occurrence is kept, the ids of
   the others go to its ``aliases`` column (``;``-joined);
5. split: ``test`` iff ``int(sha256(salt + sequence)[:16], 16) / 2**64 < test_fraction``. It depends
   on the sequence only, so a sequence never changes side when the data set grows, shrinks or is
   re-ordered.

The report's ``examples`` holds up to 20 ids per rejection reason and also for ``truncated`` and
``duplicate`` (a repeated sequence, or the same id with the same sequence given twice).

Rows keep input order (order of first occurrence): the table is stable for a given input, and
the split column does not depend on order at all.

Memory: :func:`filter_split_files` (the pipeline's ``filter_split`` rule) streams. It holds a
16-byte blake2b digest per distinct kept sequence (with its row and where it was first seen) and
one per distinct id (with the digest of its raw sequence and where it was first seen), never the
sequences themselves; the FASTA reader also keeps the ids of the file it is reading (to refuse a
repeated id). Together about 0.4 kB per record (benchmark B9: 1.1 GB peak for 2M sequences).
:func:`filter_and_split` returns the table as a DataFrame, for small inputs and tests.

Readers of the inputs: :mod:`protkit.data.readers`; the table's schema, writers and reader:
:mod:`protkit.data.table`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from protkit.data.readers import DataError, RawRecord, read_sources
from protkit.data.table import ROW_GROUP_ROWS, AliasSpill, RowGroupWriter, attach_aliases
from protkit.io.atomic import atomic_path, write_json
from protkit.io.outputs import claim_outputs
from protkit.sequences.alphabet import (
    ALPHABET_POLICIES, AMINO_ACIDS, check_alphabet, clean_sequence, looks_like_nucleotides,
)  # fmt: skip

log = logging.getLogger(__name__)

OVERLENGTH_POLICIES = ("truncate", "drop")
MAX_EXAMPLES = 20  # example ids kept (and logged) per reason
DIGEST_BYTES = 16
_ACCEPTED = "".join(sorted(AMINO_ACIDS))  # str.strip(_ACCEPTED) is empty iff every letter is accepted


def split_of(sequence: str, salt: str, test_fraction: float) -> str:
    """``test`` iff the salted sha256 of the sequence, read as a fraction of 2**64, is below
    ``test_fraction``; ``train`` otherwise."""
    digest = hashlib.sha256((salt + sequence).encode("utf-8")).hexdigest()
    return "test" if int(digest[:16], 16) / 2**64 < test_fraction else "train"


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


class _Report:
    """Counts and example ids for filter_report.json."""

    def __init__(self) -> None:
        self.input = 0
        self.rejected: Counter[str] = Counter()
        self.truncated = 0
        self.duplicates = 0
        self.examples: dict[str, list[str]] = {}

    def note(self, reason: str, record: RawRecord, detail: str, level: int = logging.WARNING) -> None:
        """Remember an example id for ``reason`` and log the first few."""
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(record.id)
            log.log(level, "%s, id %s: %s (%s)", record.origin, record.id, detail, reason)

    def reject(self, reason: str, record: RawRecord, detail: str) -> None:
        self.rejected[reason] += 1
        self.note(reason, record, detail + ", dropped")

    def as_dict(self, splits: Counter[str], test_fraction: float) -> dict:
        kept = splits["train"] + splits["test"]
        for reason, count in {**self.rejected, "truncated": self.truncated, "duplicate": self.duplicates}.items():
            if count > MAX_EXAMPLES:
                log.warning("%d more sequences with reason %s (not logged one by one)", count - MAX_EXAMPLES, reason)
        for side in ("train", "test"):
            if test_fraction > 0 and splits[side] == 0:
                log.warning("split %s is empty (%d sequences, test_fraction %s)", side, kept, test_fraction)
        return {
            "input": self.input,
            "kept": kept,
            "rejected": dict(sorted(self.rejected.items())),
            "truncated": self.truncated,
            "duplicates": self.duplicates,
            "split": {"train": splits["train"], "test": splits["test"]},
            "examples": dict(sorted(self.examples.items())),
        }

    def nothing_left(self) -> DataError:
        return DataError(
            f"no sequence left after filtering {self.input} input records "
            f"(rejected: {dict(self.rejected) or 'none'}); check min_length/max_length and the input files"
        )


class _Origins:
    """Where a record was first seen ("path line 12"), packed into one int: the index of its prefix
    ("path line", one per input file) and its number."""

    NUMBER_BITS = 40

    def __init__(self) -> None:
        self._prefixes: list[str] = []
        self._index: dict[str, int] = {}

    def pack(self, origin: str) -> int:
        prefix, _, number = origin.rpartition(" ")
        if not number.isdigit() or int(number) >= 2**self.NUMBER_BITS - 1:
            prefix, number = origin, "-1"  # not "... N": kept whole
        index = self._index.setdefault(prefix, len(self._prefixes))
        if index == len(self._prefixes):
            self._prefixes.append(prefix)
        return (index << self.NUMBER_BITS) | (int(number) + 1)

    def unpack(self, packed: int) -> str:
        prefix = self._prefixes[packed >> self.NUMBER_BITS]
        number = (packed & (2**self.NUMBER_BITS - 1)) - 1
        return prefix if number < 0 else f"{prefix} {number}"


@dataclass(frozen=True)
class _Rules:
    """The filter settings (keyword arguments of :func:`filter_and_split`), checked."""

    min_length: int
    max_length: int
    test_fraction: float
    salt: str
    overlength: str = "truncate"
    alphabet_policy: str = "reject"

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError(f"min_length must be at least 1, got {self.min_length}")
        if self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be >= min_length ({self.min_length})")
        if self.overlength not in OVERLENGTH_POLICIES:
            raise ValueError(f"overlength must be one of {', '.join(OVERLENGTH_POLICIES)}, got {self.overlength!r}")
        if self.alphabet_policy not in ALPHABET_POLICIES:
            raise ValueError(f"alphabet_policy must be one of {', '.join(ALPHABET_POLICIES)}, "
                             f"got {self.alphabet_policy!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


def _filtered(records: Iterable[RawRecord], report: _Report, rules: _Rules) -> Iterator[tuple[int, str, str | None]]:
    """The rules of the module docstring, one record at a time: ``(row, id, sequence)`` for a
    sequence kept as row ``row`` (0-based, rows in order) and ``(row, id, None)`` for an exact
    duplicate of row ``row`` (the id becomes one of its aliases). Counts and examples go to ``report``."""
    origins = _Origins()
    rows_by_digest: dict[bytes, int] = {}  # digest of a kept sequence -> (origin << 40) | row
    ids: dict[bytes, bytes] = {}  # digest of an id -> digest of its raw sequence + packed origin
    rows = 0
    for record in records:
        report.input += 1
        if _repeated_id(record, ids, origins):
            report.duplicates += 1
            report.note("duplicate", record, "same id and sequence seen before, skipped", logging.INFO)
            continue
        sequence = clean_sequence(record.sequence or "")
        suspect = sequence.strip(_ACCEPTED) or looks_like_nucleotides(sequence)
        problem = check_alphabet(sequence) if suspect else None  # the fast path first
        if problem is not None:
            reason, detail = problem
            if rules.alphabet_policy == "error":
                raise DataError(f"{record.origin}, id {record.id}: {detail} (policy: error)")
            report.reject(reason, record, detail)
            continue
        if len(sequence) < rules.min_length:
            report.reject("too_short", record, f"{len(sequence)} residues < min_length {rules.min_length}")
            continue
        if len(sequence) > rules.max_length:
            if rules.overlength == "drop":
                report.reject("too_long", record, f"{len(sequence)} residues > max_length {rules.max_length}")
                continue
            report.truncated += 1
            report.note("truncated", record, f"{len(sequence)} residues cut to {rules.max_length}", logging.INFO)
            sequence = sequence[:rules.max_length]
        digest = _digest(sequence)
        first = rows_by_digest.get(digest)
        if first is not None:
            report.duplicates += 1
            where = origins.unpack(first >> _Origins.NUMBER_BITS)
            report.note("duplicate", record, f"same sequence as {where}, kept as alias", logging.INFO)
            yield first & (2**_Origins.NUMBER_BITS - 1), record.id, None
            continue
        rows_by_digest[digest] = (origins.pack(record.origin) << _Origins.NUMBER_BITS) | rows
        yield rows, record.id, sequence
        rows += 1


def _repeated_id(record: RawRecord, ids: dict[bytes, bytes], origins: _Origins) -> bool:
    """True if the id was seen with the same raw sequence; DataError if with a different one."""
    key = _digest(record.id)
    sequence = _digest(record.sequence or "")
    previous = ids.get(key)
    if previous is None:
        ids[key] = sequence + origins.pack(record.origin).to_bytes(8, "little")
        return False
    if previous[:DIGEST_BYTES] != sequence:
        origin = origins.unpack(int.from_bytes(previous[DIGEST_BYTES:], "little"))
        raise DataError(
            f"{record.origin}, id {record.id}: id already used by {origin} for a different sequence; "
            "ids must be unique across all input files"
        )
    return True


def filter_and_split(
    records: Iterable[RawRecord],
    *,
    min_length: int,
    max_length: int,
    overlength: str = "truncate",
    alphabet_policy: str = "reject",
    test_fraction: float,
    salt: str,
) -> tuple[pd.DataFrame, dict]:
    """Clean, filter, de-duplicate and split records (rules in the module docstring), in memory.

    Returns the sequences table (columns of docs/design.md, input order) and the filter report.
    Raises :class:`DataError` on an alphabet problem under policy ``error``, on an id used twice
    for different sequences, and when no sequence survives. For data sets of any size, write the
    table with :func:`filter_split_files` instead.
    """
    rules = _Rules(min_length, max_length, test_fraction, salt, overlength, alphabet_policy)
    report = _Report()
    rows: list[tuple[str, str]] = []
    aliases: dict[int, list[str]] = {}
    for row, rid, sequence in _filtered(records, report, rules):
        if sequence is None:
            aliases.setdefault(row, []).append(rid)
        else:
            rows.append((rid, sequence))
    if not rows:
        raise report.nothing_left()
    df = _table(rows, aliases, salt, test_fraction)
    return df, report.as_dict(Counter(df["split"]), test_fraction)


def _table(rows: list[tuple[str, str]], aliases: dict[int, list[str]], salt: str, test_fraction: float) -> pd.DataFrame:
    sequences = [s for _, s in rows]
    return pd.DataFrame(
        {
            "id": [rid for rid, _ in rows],
            "sequence": sequences,
            "length": pd.array([len(s) for s in sequences], dtype="int32"),
            "split": [split_of(s, salt, test_fraction) for s in sequences],
            "aliases": [";".join(aliases.get(i, ())) for i in range(len(rows))],
        }
    )


def filter_split_files(
    records: Iterable[RawRecord], out_parquet: str | Path, out_report: str | Path, *,
    row_group_rows: int = ROW_GROUP_ROWS, **rules,
) -> dict:
    """:func:`filter_and_split` streamed to files: the table is written (atomically) in row groups
    of ``row_group_rows`` as records arrive, then the report; returns the report. ``rules``: the
    keyword arguments of :func:`filter_and_split`. Same rows, order, columns and report as
    :func:`filter_and_split` followed by :func:`write_dataset`."""
    rules = _Rules(**rules)
    report = _Report()
    splits: Counter[str] = Counter()
    out_parquet = Path(out_parquet)
    scratch_args = dict(prefix=f".{out_parquet.name}.", suffix=".tmp", dir=out_parquet.parent)
    with atomic_path(out_parquet) as tmp, tempfile.TemporaryDirectory(**scratch_args) as scratch:
        aliases = AliasSpill(Path(scratch))
        writer = RowGroupWriter(tmp, row_group_rows)
        try:
            for row, rid, sequence in _filtered(records, report, rules):
                if sequence is None:
                    aliases.add(row, rid)
                    continue
                split = split_of(sequence, rules.salt, rules.test_fraction)
                splits[split] += 1
                writer.append(rid, sequence, split)
        finally:
            writer.close()
        if writer.rows == 0:
            raise report.nothing_left()
        if aliases.count:
            attach_aliases(tmp, aliases.merged(), tmp, Path(scratch))
    result = report.as_dict(splits, rules.test_fraction)
    write_json(out_report, result)
    log.info("%s: %d of %d records kept (%d aliases), in row groups of %d", out_parquet, result["kept"],
             result["input"], aliases.count, row_group_rows)
    return result


def filter_split(data: dict, inputs: Iterable[str | Path], out_parquet: str | Path, out_report: str | Path) -> dict:
    """The ``filter_split`` rule: the ``data`` section of the config (``source``, ``min_length``,
    ``max_length``, ``overlength``, ``alphabet_policy``, ``test_fraction``, ``split_salt``) applied to
    the input files (a downloaded Hub table for source ``hub``); returns the report."""
    source, inputs = ("parquet" if data["source"] == "hub" else data["source"]), list(inputs)
    with claim_outputs([out_parquet, out_report], inputs=inputs):
        return filter_split_files(
            read_sources(source, inputs), out_parquet, out_report,
            min_length=data["min_length"], max_length=data["max_length"], overlength=data["overlength"],
            alphabet_policy=data["alphabet_policy"], test_fraction=data["test_fraction"], salt=data["split_salt"],
        )
