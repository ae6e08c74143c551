"""Streaming FASTA reader (plain or gzip) with errors that name the file and line, and the regular
expressions that take a value (a label, a split) from each header."""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from protkit.io.atomic import write_text


class FastaError(ValueError):
    """A malformed FASTA file; the message names the file, line and record id."""


@dataclass(frozen=True)
class FastaRecord:
    id: str
    description: str
    sequence: str
    line: int  # 1-based line number of the header


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a plain or gzip file; FastaError naming the file and line when
    the bytes are not UTF-8 text or the gzip stream is damaged or cut short."""
    name = str(path)
    compressed = is_gzip(path)
    lineno = 0
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
            for lineno, raw in enumerate(handle, start=1):
                if b"\0" in raw:
                    raise FastaError(f"{name} line {lineno}: binary data (NUL bytes); this is not a FASTA text file")
                try:  # utf-8-sig: a byte-order mark before the first header is not part of it
                    yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    raise FastaError(
                        f"{name} line {lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                        f"{err.start + 1}); is this a FASTA file?"
                    ) from None
    except EOFError:
        raise FastaError(
            f"{name}: the gzip data end early after line {lineno} (truncated download?); "
            f"fetch or compress the file again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise FastaError(f"{name}: damaged gzip data after line {lineno} ({err}); fetch or compress the file again") from None


def header_regex(pattern: str) -> re.Pattern:
    """``pattern`` compiled as a header regex: one capture group, the value taken from each header
    line (the text after ``>``). ValueError saying what is wrong with it otherwise."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"'{pattern}' is not a regular expression ({err})") from None
    if compiled.groups != 1:
        raise ValueError(f"'{pattern}' needs exactly one capture group (...), it has {compiled.groups}")
    return compiled


def read_fasta(
    path: str | Path,
    *,
    allowed: str | None = None,
    unique_ids: bool = True,
) -> Iterator[FastaRecord]:
    """Yield records one at a time.

    Args:
        path: FASTA file, optionally gzip-compressed (detected from the content).
        allowed: if given, every sequence character must be in this string (checked
            case-insensitively); otherwise a FastaError names the file, line and id.
        unique_ids: raise FastaError on a repeated record id.

    Undecodable (non-UTF-8 or binary) bytes and damaged or truncated gzip data raise FastaError
    naming the file and line.
    """
    name = str(path)
    allowed_set = set(allowed.upper()) if allowed is not None else None
    seen: dict[str, int] = {}
    header: tuple[str, str, int] | None = None
    chunks: list[str] = []

    def finish() -> FastaRecord:
        assert header is not None
        rid, desc, line = header
        seq = "".join(chunks)
        if not seq:
            raise FastaError(f"{name} line {line}, id {rid}: record has no sequence")
        return FastaRecord(rid, desc, seq, line)

    for lineno, raw in _lines(path):
        text = raw.strip()
        if not text or text.startswith(";"):
            continue
        if text.startswith(">"):
            if header is not None:
                yield finish()
            desc = text[1:].strip()
            rid = desc.split(maxsplit=1)[0] if desc else ""
            if not rid:
                raise FastaError(f"{name} line {lineno}: header has no id")
            if unique_ids and rid in seen:
                raise FastaError(
                    f"{name} line {lineno}, id {rid}: duplicate id (first seen line {seen[rid]})"
                )
            seen[rid] = lineno
            header, chunks = (rid, desc, lineno), []
            continue
        if header is None:
            raise FastaError(f"{name} line {lineno}: sequence data before the first '>' header")
        text = "".join(text.split())
        if allowed_set is not None:
            bad = next((c for c in text if c.upper() not in allowed_set), None)
            if bad is not None:
                raise FastaError(
                    f"{name} line {lineno}, id {header[0]}: character {bad!r} is not allowed"
                )
        chunks.append(text)
    if header is not None:
        yield finish()
    elif not seen:
        raise FastaError(f"{name}: no FASTA records found")


def write_fasta(records: list[tuple[str, str]], path: str | Path, width: int = 60) -> None:
    """Atomically write (id, sequence) pairs as FASTA."""
    lines = []
    for rid, seq in records:
        lines.append(f">{rid}")
        lines.extend(seq[start : start + width] for start in range(0, len(seq), width))
    write_text(path, "\n".join(lines) + "\n")
