"""protkit.sequences.fasta: parsing plain and gzip FASTA, and errors that name the file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from protkit.sequences.fasta import FastaError, FastaRecord, read_fasta, write_fasta

EXAMPLE = """\
>sp|P1|ONE first protein  Location-M test
MKTAYIAKQR
QISFVKSHFS

; a comment line
>P2
mktay
>P3 third\r
ACDE\r
FGHI
"""

EXPECTED = [
    FastaRecord("sp|P1|ONE", "sp|P1|ONE first protein  Location-M test", "MKTAYIAKQRQISFVKSHFS", 1),
    FastaRecord("P2", "P2", "mktay", 6),
    FastaRecord("P3", "P3 third", "ACDEFGHI", 8),
]


def write(tmp_path: Path, text: str, name: str = "input.fasta") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_plain_file_ids_descriptions_lines(tmp_path: Path) -> None:
    assert list(read_fasta(write(tmp_path, EXAMPLE))) == EXPECTED


def test_gzip_file_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "input.fasta.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(EXAMPLE.encode())
    assert list(read_fasta(path)) == EXPECTED


def test_reader_is_lazy(tmp_path: Path) -> None:
    """Records come one at a time: an error late in the file does not hide the first record."""
    records = read_fasta(write(tmp_path, ">A\nMK\n>A\nMK\n"))
    assert next(records) == FastaRecord("A", "A", "MK", 1)
    with pytest.raises(FastaError, match="duplicate id"):
        next(records)


def test_sequence_before_header(tmp_path: Path) -> None:
    path = write(tmp_path, "\nMKTA\n>P1\nMK\n")
    with pytest.raises(FastaError) as error:
        list(read_fasta(path))
    assert str(path) in str(error.value) and "line 2" in str(error.value) and "before the first '>'" in str(error.value)


@pytest.mark.parametrize(
    ("text", "line", "rid"),
    [(">P1\n>P2\nMK\n", 1, "P1"), (">P1\nMK\n>P2\n\n>P3\nMK\n", 3, "P2"), (">P1\nMK\n>P2\n", 3, "P2")],
)
def test_empty_record(tmp_path: Path, text: str, line: int, rid: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FastaError, match=f"{path} line {line}, id {rid}: record has no sequence"):
        list(read_fasta(path))


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, ">P1 a\nMK\n>P2\nMK\n>P1 b\nMK\n")
    with pytest.raises(FastaError, match=f"{path} line 5, id P1: duplicate id \\(first seen line 1\\)"):
        list(read_fasta(path))


def test_duplicates_allowed_when_asked(tmp_path: Path) -> None:
    records = list(read_fasta(write(tmp_path, ">P1\nMK\n>P1\nAC\n"), unique_ids=False))
    assert [(r.id, r.sequence, r.line) for r in records] == [("P1", "MK", 1), ("P1", "AC", 3)]


def test_header_without_id(tmp_path: Path) -> None:
    path = write(tmp_path, ">P1\nMK\n>  \nMK\n")
    with pytest.raises(FastaError, match=f"{path} line 3: header has no id"):
        list(read_fasta(path))


def test_disallowed_character_names_file_line_id_and_character(tmp_path: Path) -> None:
    path = write(tmp_path, ">P1\nMKTA\n>P2 x\nMKTA\nMK*A\n")
    with pytest.raises(FastaError, match=f"{path} line 5, id P2: character '\\*' is not allowed"):
        list(read_fasta(path, allowed="ACDEFGHIKLMNPQRSTVWY"))


def test_allowed_is_case_insensitive_and_optional(tmp_path: Path) -> None:
    path = write(tmp_path, ">P1\nmkTA*\n")
    assert [r.sequence for r in read_fasta(path)] == ["mkTA*"]
    assert [r.sequence for r in read_fasta(path, allowed="akmt*")] == ["mkTA*"]
    with pytest.raises(FastaError, match="character 'm' is not allowed"):
        list(read_fasta(path, allowed="AKT*"))


def test_file_without_records(tmp_path: Path) -> None:
    path = write(tmp_path, "\n; only a comment\n")
    with pytest.raises(FastaError, match=f"{path}: no FASTA records found"):
        list(read_fasta(path))


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    records = [("P1", "M" * 130), ("P2", "ACDE")]
    path = tmp_path / "out" / "written.fasta"
    write_fasta(records, path, width=60)
    lines = path.read_text().splitlines()
    assert lines[:4] == [">P1", "M" * 60, "M" * 60, "M" * 10]
    assert [(r.id, r.sequence) for r in read_fasta(path)] == records
    assert [p.name for p in path.parent.iterdir()] == ["written.fasta"]  # no temporary files left


def test_real_deeploc_files(shared_fastas: list[Path]) -> None:
    for path in shared_fastas:
        records = list(read_fasta(path, allowed="ACDEFGHIKLMNPQRSTVWYXBZUO"))
        assert len(records) == path.read_text().count(">")
        first = records[0]
        assert first.line == 1 and first.description.startswith(first.id + " ")
        assert all(r.description.split()[1][-2:] in ("-M", "-S", "-U") for r in records)  # Location-{M,S,U}
        assert all(r.sequence.isupper() for r in records)


def test_a_byte_order_mark_before_the_first_header_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.fasta"
    path.write_bytes("\ufeff>P1 first\nMKV\n>P2\nAAA\n".encode("utf-8"))
    assert [(r.id, r.description, r.sequence, r.line) for r in read_fasta(path)] == [
        ("P1", "P1 first", "MKV", 1), ("P2", "P2", "AAA", 3)]
