"""protkit.data: reading, cleaning, filtering, de-duplication and the sequence-hash split."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import logging
import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protkit.data import (
    DataError,
    RawRecord,
    download_hub_dataset,
    filter_and_split,
    read_dataset,
    read_sources,
    split_of,
    write_dataset,
)
from protkit.fasta import FastaError, read_fasta

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
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
