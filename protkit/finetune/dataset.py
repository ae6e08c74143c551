"""The labelled data of a fine-tuning run: the training (and test) file read, the task and label
space found, targets encoded and the validation split taken off (:mod:`protkit.finetune.tasks`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protkit.finetune.errors import FinetuneError
from protkit.finetune.labels import LabelledFile, read_labelled
from protkit.finetune.settings import FinetuneSettings
from protkit.finetune.tasks import (
    Example, LabelSpace, encode_examples, label_space, resolve_task, split_test, split_validation,
)  # fmt: skip
from protkit.sequences.tokenize import token_count

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """The labelled data of a run, split and encoded."""

    space: LabelSpace
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    files: dict[str, LabelledFile]  # "train" (and "test") as read
    max_length: int


def prepare_data(settings: FinetuneSettings, context: int) -> Prepared:
    """Read the training (and test) file, find the task and labels, split off the validation set."""
    max_length = settings.max_length or context
    if not token_count(1) <= max_length <= context:
        raise FinetuneError(f"--max-length {max_length}: must be between {token_count(1)} and the model's context "
                            f"length, {context} tokens")
    per_residue = settings.task == "tokens"
    labelled = read_labelled(settings.train, settings.labels, per_residue)
    space = label_space(resolve_task(settings.task, labelled), labelled)
    examples, test = encode_examples(space, labelled), []
    if settings.test_fraction > 0:
        examples, test = split_test(examples, settings.test_fraction)
        if not test:
            raise FinetuneError(f"{settings.train}: no protein falls in the test split of {len(examples)} "
                                f"(--test-fraction {settings.test_fraction}); raise it or give --test FILE")
    train_set, valid = split_validation(examples, settings.valid_fraction)
    if not train_set or (settings.valid_fraction > 0 and not valid):
        side = "training" if not train_set else "validation"
        raise FinetuneError(f"{settings.train}: no protein falls in the {side} split of {len(train_set) + len(valid)} "
                            f"(--valid-fraction {settings.valid_fraction}); change --valid-fraction (0: no validation)")
    if space.task == "classification" and len({e.target for e in train_set}) < 2:
        raise FinetuneError(f"{settings.train}: the training split holds one class only; add proteins of the others "
                            "or change --valid-fraction")
    files = {"train": labelled}
    if settings.test is not None:
        files["test"] = read_labelled(settings.test, settings.labels, per_residue)
        test = encode_examples(space, files["test"])
        shared = {e.id for e in test} & {e.id for e in train_set + valid}
        if shared:
            log.warning("%s: %d test ids are also in %s (e.g. %s); their test scores are not independent",
                        settings.test, len(shared), settings.train, sorted(shared)[0])
    return Prepared(space, train_set, valid, test, files, max_length)
