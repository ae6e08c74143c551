"""protkit.finetune.labels and .tasks: labelled FASTA and tables, the task guess, targets, the
validation split, and errors that name the file, line or row, id and option."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from finetune_fixtures import LABEL_REGEX

from protkit.finetune.errors import FinetuneError
from protkit.finetune.labels import read_labelled
from protkit.finetune.settings import LabelOptions
from protkit.finetune.tasks import (
    REGRESSION_MIN_DISTINCT, encode_examples, label_space, resolve_task, split_validation,
)  # fmt: skip
from protkit.hf.heads import IGNORE


def table(path: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


def test_fasta_with_a_label_regex(tmp_path: Path) -> None:
    fasta = tmp_path / "deeploc.fasta"
    fasta.write_text(">Q1 Cell.membrane-M test\nMKVLAAGIL*\n>Q2 Nucleus-S test\nmksdeer\n>Q3 Cytoplasm-U test\nMKKK\n"
                     ">Q4 Nucleus-S test\nMKJLL\n")
    labelled = read_labelled(fasta, LabelOptions(label_regex=LABEL_REGEX))
    assert [(r.id, r.sequence, r.labels) for r in labelled.records] == [("Q1", "MKVLAAGIL", ("M",)),
                                                                         ("Q2", "MKSDEER", ("S",))]
    assert labelled.n_records == 4 and labelled.skipped == {"invalid_character": 1, "no_label": 1}
    assert labelled.examples[1]["where"] == f"{fasta} line 7, id Q4"
    space = label_space(resolve_task("auto", labelled), labelled)
    assert (space.task, space.names) == ("classification", ("M", "S"))
    assert space.problem_type == "single_label_classification"
    assert [e.target for e in encode_examples(space, labelled)] == [0, 1]
    with pytest.raises(FinetuneError, match=re.escape(f"{fasta} line 7, id Q4: letter 'J' at residue 3") + ".*--alph"):
        read_labelled(fasta, LabelOptions(label_regex=LABEL_REGEX, alphabet="error"))


def test_tsv_with_several_label_columns_is_multilabel(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "sequence": "MKV" * (i + 1), "membrane": i % 2, "secreted": int(i > 2)} for i in range(6)]
    path = table(tmp_path / "labels.tsv", rows)
    options = LabelOptions(label_columns=("membrane", "secreted"))
    labelled = read_labelled(path, options)
    space = label_space(resolve_task("auto", labelled), labelled)
    assert (space.task, space.names, space.num_labels) == ("multilabel", ("membrane", "secreted"), 2)
    assert [e.target for e in encode_examples(space, labelled)][:4] == [(0.0, 0.0), (1.0, 0.0), (0.0, 0.0), (1.0, 1.0)]
    rows[2]["secreted"] = "maybe"
    bad = read_labelled(table(tmp_path / "bad.tsv", rows), options)
    with pytest.raises(FinetuneError, match=re.escape(f"{tmp_path / 'bad.tsv'} line 4, id p2: 'maybe' in column "
                                                      "'secreted' is not 0 or 1") + r".*--label-column secreted"):
        encode_examples(label_space("multilabel", bad), bad)
    with pytest.raises(FinetuneError, match="--task classification takes one --label-column"):
        resolve_task("classification", labelled)


def test_numbers_with_many_values_are_regression(tmp_path: Path) -> None:
    many = [{"id": f"p{i}", "sequence": "MKVL", "tm": 40.0 + i * 1.5} for i in range(REGRESSION_MIN_DISTINCT + 1)]
    labelled = read_labelled(table(tmp_path / "tm.csv", many), LabelOptions(label_columns=("tm",)))
    space = label_space(resolve_task("auto", labelled), labelled)
    assert (space.task, space.num_labels, space.metric) == ("regression", 1, "spearman")
    assert encode_examples(space, labelled)[3].target == pytest.approx(44.5)
    few = [{"id": f"p{i}", "sequence": "MKVL", "grade": [10, 2, 1][i % 3]} for i in range(9)]
    labelled = read_labelled(table(tmp_path / "grade.parquet", few), LabelOptions(label_columns=("grade",)))
    space = label_space(resolve_task("auto", labelled), labelled)
    assert (space.task, space.names) == ("classification", ("1", "2", "10"))  # numeric order
    words = [{"id": "a", "sequence": "MKVL", "tm": "high"}, {"id": "b", "sequence": "MKVL", "tm": "40"}]
    labelled = read_labelled(table(tmp_path / "words.csv", words), LabelOptions(label_columns=("tm",)))
    with pytest.raises(FinetuneError, match=re.escape(f"{tmp_path / 'words.csv'} line 2, id a: the label 'high' is "
                                                      "not a number") + ".*--label-column tm"):
        encode_examples(label_space("regression", labelled), labelled)


def test_per_residue_labels_from_strings_and_lists(tmp_path: Path) -> None:
    rows = [{"id": "a", "sequence": "MKVL*", "ss": "HHE-"}, {"id": "b", "sequence": "GAV", "ss": "E-H"}]
    labelled = read_labelled(table(tmp_path / "ss.csv", rows), LabelOptions(label_columns=("ss",)), per_residue=True)
    space = label_space("tokens", labelled)
    assert space.names == ("-", "E", "H")
    assert [e.target for e in encode_examples(space, labelled)] == [(2, 2, 1, 0), (1, 0, 2)]
    lists = [{"id": "a", "sequence": "MKVL", "site": [0, 1, None, 0]},
             {"id": "b", "sequence": "GAV", "site": [1, 1, 0]}]
    labelled = read_labelled(table(tmp_path / "site.parquet", lists), LabelOptions(label_columns=("site",)), True)
    assert encode_examples(label_space("tokens", labelled), labelled)[0].target == (0, 1, IGNORE, 0)
    with pytest.raises(FinetuneError, match=r"site\.parquet row 1, id a: a label column holds a list .*--task tokens"):
        read_labelled(tmp_path / "site.parquet", LabelOptions(label_columns=("site",)))
    rows[1]["ss"] = "E-HH"
    with pytest.raises(FinetuneError, match=re.escape(f"{tmp_path / 'bad.csv'} line 3, id b: 4 per-residue labels for "
                                                      "3 residues; column 'ss' (--label-column)")):
        read_labelled(table(tmp_path / "bad.csv", rows), LabelOptions(label_columns=("ss",)), per_residue=True)
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a x-M\nMKV\n")
    with pytest.raises(FinetuneError, match="--task tokens reads per-residue labels from a table column"):
        read_labelled(fasta, LabelOptions(label_regex=LABEL_REGEX), per_residue=True)


@pytest.mark.parametrize(("case", "message"), [
    ("no_regex", r"needs --label-regex"),
    ("two_groups", r"--label-regex '\^\(\\S\+\) \(\\S\+\)' needs exactly one capture group"),
    ("no_match", r"x\.fasta: --label-regex '\^\\S\+\\s\+\\S\+-\(\[MS\]\)\\b' takes a label from no header \(first "
                 r"header, line 1: 'a nolabel'\)"),
    ("missing_column", r"labels\.csv: no column 'class' \(it has id, sequence, label\).*--label-column"),
    ("regex_on_table", r"labels\.csv: --label-regex is for FASTA files"),
    ("repeated_id", r"labels\.csv line 3, id a: the id repeats .*labels\.csv line 2, id a.*--id-column id"),
    ("dna", r"x\.fasta: looks like DNA/RNA"),
    ("one_class", r"every protein has the label 'M'; classification needs two classes"),
])
def test_errors_name_file_line_id_and_option(case: str, message: str, tmp_path: Path) -> None:
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a nolabel\nMKVLL\n>b other\nMKVL\n")
    csv = table(tmp_path / "labels.csv", [{"id": "a", "sequence": "MKV", "label": "x"},
                                          {"id": "a", "sequence": "MKV", "label": "y"}])
    path, options = fasta, LabelOptions(label_regex=LABEL_REGEX)
    if case == "no_regex":
        options = LabelOptions()
    elif case == "two_groups":
        options = LabelOptions(label_regex=r"^(\S+) (\S+)")
    elif case in ("missing_column", "regex_on_table", "repeated_id"):
        path = csv
        options = LabelOptions(label_columns=("class",) if case == "missing_column" else ("label",),
                               label_regex=LABEL_REGEX if case == "regex_on_table" else None)
    elif case == "dna":
        fasta.write_text("".join(f">s{i} x-M\n{'ACGT' * 30}\n" for i in range(3)))
    elif case == "one_class":
        fasta.write_text(">a x-M\nMKVL\n>b x-M\nMKKL\n")
    with pytest.raises(FinetuneError, match=message):
        labelled = read_labelled(path, options)
        label_space(resolve_task("auto", labelled), labelled)


def test_validation_split_is_stable_and_about_the_fraction(tmp_path: Path) -> None:
    rows = [{"id": f"prot{i}", "sequence": "MKVL", "label": "ab"[i % 2]} for i in range(2000)]
    labelled = read_labelled(table(tmp_path / "many.csv", rows), LabelOptions(label_columns=("label",)))
    examples = encode_examples(label_space("classification", labelled), labelled)
    train, valid = split_validation(examples, 0.1)
    assert 150 < len(valid) < 250 and len(train) + len(valid) == 2000
    again = split_validation(list(reversed(examples[:1000])), 0.1)[1]
    assert {e.id for e in again} == {e.id for e in valid if int(e.id[4:]) < 1000}
