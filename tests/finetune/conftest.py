"""Fixtures of the fine-tuning tests: synthetic labelled FASTA files and one fine-tuned model to
predict with (helpers: ``finetune_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_fixtures import FAST, LABEL_REGEX, membrane_like, write_labelled_fasta

from protkit.cli.main import main


@pytest.fixture(scope="session")
def synthetic_fastas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``train`` (240 proteins) and ``test`` (80) FASTA files labelled M/S in their headers."""
    root = tmp_path_factory.mktemp("synthetic")
    return {"train": write_labelled_fasta(membrane_like(240, 1), root / "train.fasta"),
            "test": write_labelled_fasta(membrane_like(80, 2), root / "test.fasta")}


@pytest.fixture(scope="session")
def finetuned_dir(model_dir: Path, synthetic_fastas: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student fine-tuned (LoRA) for three epochs on the synthetic M/S proteins."""
    out = tmp_path_factory.mktemp("finetuned") / "model"
    assert main(["-q", "finetune", "--model", str(model_dir), "--train", str(synthetic_fastas["train"]),
                 "--label-regex", LABEL_REGEX, "--output", str(out), "--epochs", "3", "--no-baselines", *FAST]) == 0
    return out
