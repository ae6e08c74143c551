"""From labelled records to training examples: the task, the label space (classes, label columns),
the numeric targets and the hashed validation split.

``--task auto``: several label columns -> ``multilabel`` (0/1 values); labels that all read as
numbers with more than :data:`REGRESSION_MIN_DISTINCT` distinct values -> ``regression``; else
``classification`` (label texts -> class ids; numbers in numeric order, texts in alphabetical
order). ``tokens`` (per-residue classes) is never guessed: ask for it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence, Union

from protkit.data.filter import split_of
from protkit.finetune.errors import FinetuneError
from protkit.finetune.labels import LabelledFile, table_separator
from protkit.finetune.settings import TEST_SALT, VALID_SALT
from protkit.hf.heads import IGNORE

log = logging.getLogger(__name__)

REGRESSION_MIN_DISTINCT = 10  # numeric labels with more distinct values than this are a regression target
PROBLEM_TYPES = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
                 "regression": "regression", "tokens": "single_label_classification"}  # Hugging Face's names
METRICS = {"classification": "mcc", "multilabel": "macro_f1", "regression": "spearman", "tokens": "mcc"}  # early stop
BINARY = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}  # multi-label values

Target = Union[int, float, tuple[float, ...], tuple[int, ...]]


@dataclass(frozen=True)
class LabelSpace:
    """What a model predicts: the task and its label names (classes for classification and tokens,
    label columns for multilabel, the label column for regression)."""

    task: str
    names: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "regression" else len(self.names)

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPES[self.task]

    @property
    def metric(self) -> str:
        return METRICS[self.task]

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))


@dataclass(frozen=True)
class Example:
    """A protein to train on or score: ``target`` is a class id (classification), a float
    (regression), one 0/1 float per label (multilabel) or one class id per residue (tokens;
    :data:`~protkit.hf.heads.IGNORE` for unlabelled residues)."""

    id: str
    sequence: str
    target: Target


def as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def label_option(labelled: LabelledFile, column: str | None = None) -> str:
    """The option that gave a file's labels: ``--label-regex`` or ``--label-column NAME``."""
    if table_separator(labelled.path) is None:
        return "--label-regex"
    return f"--label-column {column or labelled.label_names[0]}"


def resolve_task(requested: str, labelled: LabelledFile) -> str:
    """The task: ``requested``, or for ``auto`` the one the labels suggest (module docstring)."""
    several = len(labelled.label_names) > 1
    if requested == "auto":
        if several:
            return "multilabel"
        numbers = {as_number(r.labels[0]) for r in labelled.records}
        return "regression" if None not in numbers and len(numbers) > REGRESSION_MIN_DISTINCT else "classification"
    if requested == "multilabel" and not several:
        raise FinetuneError(f"{labelled.path}: --task multilabel needs two or more --label-column (one 0/1 column "
                            "per label)")
    if requested != "multilabel" and several:
        raise FinetuneError(f"{labelled.path}: --task {requested} takes one --label-column; several label columns "
                            "make a multi-label task (--task multilabel or auto)")
    return requested


def ordered_labels(values: set[str]) -> tuple[str, ...]:
    """Class names: numbers in numeric order, else texts in alphabetical order."""
    if all(as_number(v) is not None for v in values):
        return tuple(sorted(values, key=lambda v: (as_number(v), v)))
    return tuple(sorted(values))


def label_space(task: str, labelled: LabelledFile) -> LabelSpace:
    """The label space of the training file; FinetuneError when it has fewer than two classes."""
    if task in ("multilabel", "regression"):
        return LabelSpace(task, labelled.label_names)
    if task == "tokens":
        values = {label for r in labelled.records for label in r.labels if label}
    else:
        values = {r.labels[0] for r in labelled.records}
    if len(values) < 2:
        raise FinetuneError(f"{labelled.path}: every {'residue' if task == 'tokens' else 'protein'} has the label "
                            f"{next(iter(values), '')!r}; {task} needs two classes or more ({label_option(labelled)})")
    return LabelSpace(task, ordered_labels(values))


def encode_examples(space: LabelSpace, labelled: LabelledFile) -> list[Example]:
    """Examples with numeric targets; records with a class the training file lacks (a test file's)
    are left out and counted in ``labelled.skipped['unseen_label']``."""
    index = {name: i for i, name in enumerate(space.names)}
    examples, unseen = [], 0
    for record in labelled.records:
        if space.task == "classification":
            if record.labels[0] not in index:
                unseen += 1
                continue
            target: Target = index[record.labels[0]]
        elif space.task == "tokens":
            if any(label and label not in index for label in record.labels):
                unseen += 1
                continue
            target = tuple(index[label] if label else IGNORE for label in record.labels)
        elif space.task == "multilabel":
            target = tuple(binary_value(v, record.where, labelled, c) for v, c in zip(record.labels, space.names))
        else:
            target = number_value(record.labels[0], record.where, labelled)
        examples.append(Example(record.id, record.sequence, target))
    if unseen:
        labelled.skipped["unseen_label"] = unseen
        log.warning("%s: %d records left out: their labels are not among the training file's (%s)", labelled.path,
                    unseen, ", ".join(space.names))
    if not examples:
        raise FinetuneError(f"{labelled.path}: no protein with a label the training file has "
                            f"({', '.join(space.names)})")
    return examples


def binary_value(text: str, where: str, labelled: LabelledFile, column: str) -> float:
    value = BINARY.get(text.lower())
    if value is None:
        raise FinetuneError(f"{where}: {text!r} in column {column!r} is not 0 or 1; a multi-label task takes one 0/1 "
                            f"column per label ({label_option(labelled, column)})")
    return value


def number_value(text: str, where: str, labelled: LabelledFile) -> float:
    value = as_number(text)
    if value is None:
        raise FinetuneError(f"{where}: the label {text!r} is not a number; --task regression needs numeric labels "
                            f"({label_option(labelled)}), or use --task classification")
    return value


def split_validation(examples: Sequence[Example], fraction: float,
                     salt: str = VALID_SALT) -> tuple[list[Example], list[Example]]:
    """``(kept, held out)``: an example is held out when the salted hash of its id falls below
    ``fraction`` (:func:`protkit.data.filter.split_of`), so it stays there when the file changes.
    The validation split by default; ``salt=TEST_SALT`` the test split of ``--test-fraction``."""
    held = [split_of(e.id, salt, fraction) == "test" for e in examples]
    return [e for e, h in zip(examples, held) if not h], [e for e, h in zip(examples, held) if h]


def split_test(examples: Sequence[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """``(rest, test)``: the test split of ``--test-fraction`` (a hash of the id, its own salt)."""
    return split_validation(examples, fraction, TEST_SALT)
