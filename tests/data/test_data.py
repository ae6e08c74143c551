"""protkit.data: reading, cleaning, filtering, de-duplication and the sequence-hash split."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import logging
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protkit.data import table as data_table
from protkit.data.filter import filter_and_split, filter_split, filter_split_files, split_of
from protkit.data.readers import DataError, RawRecord, download_hub_dataset, read_sources
from protkit.data.table import SCHEMA, read_dataset, write_dataset
from protkit.sequences.fasta import FastaError, read_fasta

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PROTEOME = importlib.resources.files("pyhmmer") / "tests/data/seqs/938293.PRJEB85.HG003687.faa"
DEFAULTS = dict(min_length=5, max_length=50, overlength="truncate", alphabet_policy="reject",
                test_fraction=0.2, salt="protkit")


def run(records, **overrides):
    return filter_and_split(records, **{**DEFAULTS, **overrides})


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def proteome() -> list[RawRecord]:
    """2,100 real proteins (Prodigal output: each ends in a '*' stop)."""
    return list(read_sources("fasta", [str(PROTEOME)]))


@pytest.fixture
def messy_fasta(tmp_path: Path) -> Path:
    return write(
        tmp_path / "messy.fasta",
        ">ok1 fine\nMKVLAAGIVG\n"
        ">lower\nmkvlaagivw\n"
        ">stop trailing star\nMKTAYIAKQR*\n"
        ">jay\nMKVJLAAGIV\n"
        ">digit\nMKV1LAAGIV\n"
        ">internal\nMKVL*AAGIV\n"
        ">gap\nMKVL-AAGIV\n"
        ">rare XBZUO are fine\nXBZUOMKVLA\n",
    )


# --------------------------------------------------------------------------- reading


def test_read_sources_fasta_gz_and_origin(tmp_path: Path):
    plain = write(tmp_path / "a.fasta", ">p1\nMKV\nLLA\n>p2\nGGG\n")
    packed = tmp_path / "b.fasta.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write(">p3 desc\nMKVA\n")
    records = list(read_sources("fasta", [plain, packed]))
    assert [(r.id, r.sequence) for r in records] == [("p1", "MKVLLA"), ("p2", "GGG"), ("p3", "MKVA")]
    assert records[1].origin == f"{plain} line 4"
    assert records[2].origin == f"{packed} line 1"


def test_read_sources_fasta_repeated_id_in_one_file(tmp_path: Path):
    path = write(tmp_path / "dup.fasta", ">p1\nMKV\n>p1\nMKV\n")
    with pytest.raises(FastaError, match=r"dup.fasta line 3, id p1: duplicate id"):
        list(read_sources("fasta", [path]))


def test_read_sources_parquet_custom_columns_and_missing_column(tmp_path: Path):
    path = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"Entry": ["A1", "A2"], "Sequence": ["MKV", "GGA"], "other": [1, 2]}), path)
    records = list(read_sources("parquet", [path], id_column="Entry", sequence_column="Sequence"))
    assert [(r.id, r.sequence, r.origin) for r in records] == [
        ("A1", "MKV", f"{path} row 0"), ("A2", "GGA", f"{path} row 1"),
    ]
    with pytest.raises(DataError, match=r"no column 'sequence'; available columns: Entry, Sequence, other"):
        list(read_sources("parquet", [path], id_column="Entry"))


def test_read_sources_rejects_unknown_source(tmp_path: Path):
    with pytest.raises(ValueError, match="fasta, parquet"):
        list(read_sources("genbank", [tmp_path / "x.gb"]))


# --------------------------------------------------------------------------- hub download


def test_download_hub_dataset_from_local_directory(tmp_path: Path):
    repo = tmp_path / "repo" / "data"
    repo.mkdir(parents=True)
    pd.DataFrame({"Entry": ["P1", "P2", "P3"], "seq": ["MKV", "MKLA", "GG"], "go": ["a", "b", "c"]}).to_parquet(
        repo / "train-00000-of-00001.parquet"
    )
    out = download_hub_dataset(str(tmp_path / "repo"), "main", tmp_path / "out" / "raw.parquet",
                               id_column="Entry", sequence_column="seq", cache_dir=tmp_path / "hf")
    table = pq.read_table(out)
    assert table.column_names == ["id", "sequence"]
    assert table.to_pydict() == {"id": ["P1", "P2", "P3"], "sequence": ["MKV", "MKLA", "GG"]}
    assert [r.id for r in read_sources("parquet", [out])] == ["P1", "P2", "P3"]
    assert [p.name for p in out.parent.iterdir()] == ["raw.parquet"]  # no temporary files left

    numbered = download_hub_dataset(str(tmp_path / "repo"), "main", tmp_path / "numbered.parquet",
                                    id_column=None, sequence_column="seq", cache_dir=tmp_path / "hf")
    assert pq.read_table(numbered).column("id").to_pylist() == ["row0", "row1", "row2"]

    with pytest.raises(DataError, match=r"no column 'sequence'; available columns: Entry, seq, go"):
        download_hub_dataset(str(tmp_path / "repo"), "main", tmp_path / "bad.parquet",
                             id_column="Entry", sequence_column="sequence", cache_dir=tmp_path / "hf")
    assert not (tmp_path / "bad.parquet").exists()


# --------------------------------------------------------------------------- cleaning and alphabet


def test_cleaning_and_reject_policy(messy_fasta: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="protkit.data"):
        df, report = run(read_sources("fasta", [messy_fasta]))
    kept = dict(zip(df["id"], df["sequence"]))
    assert kept == {"ok1": "MKVLAAGIVG", "lower": "MKVLAAGIVW", "stop": "MKTAYIAKQR", "rare": "XBZUOMKVLA"}
    assert report["input"] == 8 and report["kept"] == 4
    assert report["rejected"] == {"invalid_character": 3, "internal_stop": 1}
    assert report["examples"]["invalid_character"] == ["jay", "digit", "gap"]
    assert report["examples"]["internal_stop"] == ["internal"]
    assert "id jay: letter 'J' at residue 4 is not an amino acid" in caplog.text
    assert "id internal: internal stop '*' at residue 5" in caplog.text


@pytest.mark.parametrize(
    "bad_id, message",
    [
        ("jay", r"messy.fasta line 7, id jay: letter 'J' at residue 4 is not an amino acid \(policy: error\)"),
        ("digit", r"messy.fasta line 9, id digit: character '1' at residue 4 is not an amino acid"),
        ("internal", r"messy.fasta line 11, id internal: internal stop '\*' at residue 5 \(policy: error\)"),
    ],
)
def test_error_policy_names_file_line_id(messy_fasta: Path, bad_id: str, message: str):
    records = [r for r in read_sources("fasta", [messy_fasta]) if r.id in ("ok1", bad_id)]
    with pytest.raises(DataError, match=message):
        run(records, alphabet_policy="error")


def test_policy_values_are_checked():
    with pytest.raises(ValueError, match="alphabet_policy must be one of reject, error"):
        run([], alphabet_policy="warn")
    with pytest.raises(ValueError, match="overlength must be one of truncate, drop"):
        run([], overlength="cut")
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\)"):
        run([], test_fraction=1.5)


# --------------------------------------------------------------------------- length window


def test_truncate_versus_drop():
    records = [RawRecord("short", "MKV", "t line 1"), RawRecord("edge", "A" * 10, "t line 3"),
               RawRecord("long", "MKVLAGGWTYHHE", "t line 5")]
    df, report = run(records, min_length=4, max_length=10, overlength="truncate")
    assert dict(zip(df["id"], df["sequence"])) == {"edge": "A" * 10, "long": "MKVLAGGWTY"}
    assert df["length"].tolist() == [10, 10] and str(df["length"].dtype) == "int32"
    assert report["truncated"] == 1 and report["rejected"] == {"too_short": 1}
    assert report["examples"]["truncated"] == ["long"]

    df, report = run(records, min_length=4, max_length=10, overlength="drop")
    assert df["id"].tolist() == ["edge"]
    assert report["rejected"] == {"too_short": 1, "too_long": 1} and report["truncated"] == 0


# --------------------------------------------------------------------------- duplicates


def test_exact_duplicates_become_aliases():
    records = [
        RawRecord("a", "MKVLAAG", "f line 1"),
        RawRecord("b", "mkvlaag*", "f line 3"),  # same after cleaning
        RawRecord("c", "GGGGGGG", "f line 5"),
        RawRecord("d", "MKVLAAGWWW", "f line 7"),  # same as a after truncation to 7
        RawRecord("a", "MKVLAAG", "g row 0"),  # same id, same sequence in another file
    ]
    df, report = run(records, max_length=7)
    assert df["id"].tolist() == ["a", "c"]
    assert df["aliases"].tolist() == ["b;d", ""]
    assert report["duplicates"] == 3 and report["kept"] == 2 and report["input"] == 5
    assert report["examples"]["duplicate"] == ["b", "d", "a"]


def test_same_id_different_sequence_is_an_error():
    records = [RawRecord("P1", "MKVLAAG", "a.fasta line 1"), RawRecord("P1", "GGGGGGG", "b.fasta line 9")]
    with pytest.raises(DataError, match=r"b.fasta line 9, id P1: id already used by a.fasta line 1"):
        run(records)


def test_nothing_left_is_an_error():
    with pytest.raises(DataError, match=r"no sequence left after filtering 1 input records.*too_short"):
        run([RawRecord("x", "MK", "f line 1")])


# --------------------------------------------------------------------------- split


def test_split_matches_the_documented_hash():
    import hashlib

    seq = "MKVLAAGIVGLLLAAG"
    value = int(hashlib.sha256(("s1" + seq).encode()).hexdigest()[:16], 16) / 2**64
    assert split_of(seq, "s1", value + 1e-9) == "test"
    assert split_of(seq, "s1", value - 1e-9) == "train"


def test_split_stable_under_growth_shrinking_and_shuffling(proteome: list[RawRecord]):
    def sides(records):  # sequence -> split (which duplicate id is kept depends on order)
        df, _ = run(records, min_length=1, max_length=5000)
        return dict(zip(df["sequence"], df["split"]))

    full = sides(proteome)
    assert set(full.values()) == {"train", "test"}
    shuffled = proteome[:]
    random.Random(7).shuffle(shuffled)
    assert sides(shuffled) == full
    half = sides(proteome[::2])
    assert half == {k: full[k] for k in half}
    extra = [RawRecord(f"new{i}", "MKV" + "ACDEFGHIKL"[i % 10] * (20 + i), "x line 1") for i in range(50)]
    grown = sides(proteome[:1000] + extra)
    assert len(grown) >= 1000
    assert {k: v for k, v in grown.items() if k in full} == sides(proteome[:1000])


def test_test_fraction_roughly_respected(proteome: list[RawRecord]):
    df, report = run(proteome, min_length=1, max_length=5000, test_fraction=0.2)
    n = len(df)
    assert report["split"] == {"train": int((df["split"] == "train").sum()), "test": int((df["split"] == "test").sum())}
    # 2,095 unique proteins; binomial sd ~18, allow 4 sd.
    assert abs(report["split"]["test"] - 0.2 * n) < 4 * (n * 0.2 * 0.8) ** 0.5
    other, _ = run(proteome, min_length=1, max_length=5000, test_fraction=0.2, salt="another salt")
    assert (other["split"] != df["split"]).sum() > 100  # the salt changes which side a protein is on
    none, report_none = run(proteome, min_length=1, max_length=5000, test_fraction=0.0)
    assert report_none["split"]["test"] == 0


def test_proteome_stops_are_stripped(proteome: list[RawRecord]):
    df, report = run(proteome, min_length=1, max_length=5000)
    assert not df["sequence"].str.contains(r"\*").any()
    assert report["rejected"] == {}
    assert report["kept"] + report["duplicates"] == report["input"] == 2100


# --------------------------------------------------------------------------- files


def test_write_and_read_dataset(tmp_path: Path, messy_fasta: Path):
    df, report = run(read_sources("fasta", [messy_fasta]))
    out = tmp_path / "results" / "sequences.parquet"
    write_dataset(df, report, out, tmp_path / "results" / "filter_report.json")
    schema = pq.read_schema(out)
    assert schema.names == ["id", "sequence", "length", "split", "aliases"]
    assert schema.field("length").type == pa.int32()
    back = read_dataset(out)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert json.loads((tmp_path / "results" / "filter_report.json").read_text()) == report
    assert sorted(p.name for p in out.parent.iterdir()) == ["filter_report.json", "sequences.parquet"]

    pq.write_table(pa.table({"id": ["a"], "sequence": ["MKV"]}), tmp_path / "raw.parquet")
    with pytest.raises(DataError, match="missing column.*length, split, aliases"):
        read_dataset(tmp_path / "raw.parquet")


@pytest.mark.parametrize("name", ["deeploc_test.fasta", "deeploc_hard.fasta"])
def test_real_deeploc_files(name: str):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present (shared DeepLoc data is not in the repository)")
    n_records = sum(1 for _ in read_fasta(path))
    df, report = run(read_sources("fasta", [path]), min_length=10, max_length=1000)
    assert report["input"] == n_records
    assert report["kept"] == len(df) > 0.9 * n_records
    assert report["input"] == report["kept"] + sum(report["rejected"].values()) + report["duplicates"]
    assert df["length"].max() <= 1000 and df["length"].min() >= 10
    assert df["id"].is_unique


# --------------------------------------------------------------------------- streaming to files


def reference_filter(records, *, min_length, max_length, overlength, test_fraction, salt, **_):
    """The filter as it was before it streamed (policy reject), kept as the oracle: whole sequences
    in dicts, every row in memory."""
    accepted = set("ACDEFGHIKLMNPQRSTVWYXBZUO")
    rows, row_of, seen = [], {}, {}
    rejected, examples, counts = Counter(), {}, Counter()

    def note(reason, rid):
        kept = examples.setdefault(reason, [])
        if len(kept) < 20:
            kept.append(rid)

    for r in records:
        counts["input"] += 1
        if r.id in seen:
            assert seen[r.id] == r.sequence, "the reference does not raise"
            counts["duplicates"] += 1
            note("duplicate", r.id)
            continue
        seen[r.id] = r.sequence
        seq = r.sequence.upper().rstrip("*")
        bad = next((c for c in seq if c not in accepted), None)
        too_long = len(seq) > max_length and overlength == "drop"
        reason = ("internal_stop" if bad == "*" else "invalid_character") if bad else (
            "too_short" if len(seq) < min_length else "too_long" if too_long else None)
        if reason:
            rejected[reason] += 1
            note(reason, r.id)
            continue
        if len(seq) > max_length:
            counts["truncated"] += 1
            note("truncated", r.id)
            seq = seq[:max_length]
        if seq in row_of:
            counts["duplicates"] += 1
            rows[row_of[seq]][2].append(r.id)
            note("duplicate", r.id)
            continue
        row_of[seq] = len(rows)
        rows.append((r.id, seq, []))
    splits = [split_of(seq, salt, test_fraction) for _, seq, _ in rows]
    df = pd.DataFrame({"id": [r[0] for r in rows], "sequence": [r[1] for r in rows],
                       "length": pd.array([len(r[1]) for r in rows], dtype="int32"), "split": splits,
                       "aliases": [";".join(r[2]) for r in rows]})
    report = {"input": counts["input"], "kept": len(rows), "rejected": dict(sorted(rejected.items())),
              "truncated": counts["truncated"], "duplicates": counts["duplicates"],
              "split": {"train": splits.count("train"), "test": splits.count("test")},
              "examples": dict(sorted(examples.items()))}
    return pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False), report


@pytest.fixture
def many_sources(tmp_path: Path, messy_fasta: Path) -> list[tuple[str, Path]]:
    """The proteome, DeepLoc when present, copies of the proteome under new ids (lower case, with
    tails cut off by truncation: aliases), a parquet file that repeats records, and messy records."""
    copies = tmp_path / "copies.fasta.gz"
    records = list(read_fasta(PROTEOME))
    with gzip.open(copies, "wt") as handle:
        for i, rec in enumerate(records):
            seq = rec.sequence.rstrip("*")
            seq = seq.lower() if i % 3 == 0 else seq + "W" * (i % 5) * 200
            handle.write(f">copy{i}\n{seq}\n")
    repeat = tmp_path / "repeat.parquet"
    pq.write_table(pa.table({"id": [r.id for r in records[100:160]] + ["new1", "new2"],
                             "sequence": [r.sequence for r in records[100:160]] + ["MKVLAAGIVW" * 3, "GG"]}), repeat)
    deeploc = [("fasta", SHARED / n) for n in ("deeploc_test.fasta", "deeploc_hard.fasta") if (SHARED / n).exists()]
    return [("fasta", Path(str(PROTEOME))), *deeploc, ("fasta", copies), ("parquet", repeat), ("fasta", messy_fasta)]


def stream(sources):
    for source, path in sources:
        yield from read_sources(source, [path])


@pytest.mark.parametrize("overlength, row_group_rows", [("truncate", 97), ("drop", 100_000)])
def test_streamed_files_match_the_in_memory_reference(many_sources, tmp_path: Path, monkeypatch,
                                                      overlength: str, row_group_rows: int):
    monkeypatch.setattr(data_table, "ALIAS_RUN_PAIRS", 7)  # aliases spilled to many sorted runs
    rules = dict(min_length=30, max_length=400, overlength=overlength, alphabet_policy="reject",
                 test_fraction=0.1, salt="protkit-split-v1")
    expected, expected_report = reference_filter(stream(many_sources), **rules)
    assert expected_report["duplicates"] > 500 and expected_report["rejected"]
    assert max(len(a.split(";")) for a in expected.column("aliases").to_pylist()) >= 2

    out = tmp_path / "results"
    report = filter_split_files(stream(many_sources), out / "sequences.parquet", out / "filter_report.json",
                                row_group_rows=row_group_rows, **rules)
    got = pq.read_table(out / "sequences.parquet")
    assert got.equals(expected, check_metadata=True)  # rows, order, columns, dtypes, pandas metadata
    assert report == expected_report == json.loads((out / "filter_report.json").read_text())
    assert pq.ParquetFile(out / "sequences.parquet").metadata.num_row_groups == -(-len(expected) // row_group_rows)
    assert sorted(p.name for p in out.iterdir()) == ["filter_report.json", "sequences.parquet"]  # no scratch left
    pd.testing.assert_frame_equal(read_dataset(out / "sequences.parquet"), expected.to_pandas())

    df, in_memory_report = filter_and_split(stream(many_sources), **rules)
    write_dataset(df, in_memory_report, tmp_path / "m.parquet", tmp_path / "m.json")
    assert pq.read_table(tmp_path / "m.parquet").equals(expected, check_metadata=True)
    assert in_memory_report == expected_report


def test_filter_split_rule_entry_point_reads_a_hub_table(tmp_path: Path):
    raw = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "sequence": ["MKVLAAG", "mkvlaag*", "GG"]}), raw)
    data = dict(source="hub", min_length=3, max_length=50, overlength="truncate", alphabet_policy="reject",
                test_fraction=0.0, split_salt="s")
    report = filter_split(data, [raw], tmp_path / "out" / "sequences.parquet", tmp_path / "out" / "report.json")
    assert report["kept"] == 1 and report["rejected"] == {"too_short": 1} and report["duplicates"] == 1
    assert read_dataset(tmp_path / "out" / "sequences.parquet")[["id", "aliases"]].values.tolist() == [["a", "b"]]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.fasta": ">P1\nMKVLAAG\n", "b.fasta": ">P2\nMKVLAAGW\n>P1\nGGGGGGG\n"},
         r"b.fasta line 3, id P1: id already used by .*a.fasta line 1 for a different sequence"),
        ({"a.fasta": ">P1\nMKVLAAG\n>P2\nMKVJAAG\n"}, r"a.fasta line 3, id P2: letter 'J' at residue 4"),
        ({"a.fasta": ">P1\nMK\n"}, r"no sequence left after filtering 1 input records"),
    ],
)
def test_streamed_errors_name_file_line_id_and_leave_no_files(tmp_path: Path, files: dict, message: str):
    paths = [write(tmp_path / name, text) for name, text in files.items()]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=message):
        filter_split_files(read_sources("fasta", paths), out / "sequences.parquet", out / "report.json",
                           **{**DEFAULTS, "alphabet_policy": "error"})
    assert list(out.iterdir()) == []


def test_duplicates_log_where_the_kept_copy_was_seen(caplog):
    records = [RawRecord("a", "MKVLAAG", "f.fasta line 1"), RawRecord("b", "MKVLAAG", "f.fasta line 3"),
               RawRecord("c", "MKVLAAGW", "odd origin"), RawRecord("d", "MKVLAAGW", "g row 7")]
    with caplog.at_level(logging.INFO, logger="protkit.data"):
        df, _ = run(records)
    assert df["aliases"].tolist() == ["b", "d"]
    assert "id b: same sequence as f.fasta line 1, kept as alias" in caplog.text
    assert "id d: same sequence as odd origin, kept as alias" in caplog.text


def test_a_nucleotide_record_is_rejected_like_a_bad_letter():
    records = [RawRecord("dna", "ACGT" * 8, "x line 1"), RawRecord("prot", "MKVLAAGIVGACGT", "x line 3"),
               RawRecord("polyA", "AAAAAAAAAAAA", "x line 5")]  # 12 letters: too short to tell
    df, report = run(records, min_length=5)
    assert df["id"].tolist() == ["prot", "polyA"] and report["rejected"] == {"nucleotide": 1}
    with pytest.raises(DataError, match=r"x line 1, id dna: all 32 letters are A/C/G/T/U/N"):
        run(records, min_length=5, alphabet_policy="error")
