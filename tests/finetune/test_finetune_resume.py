"""A ``protkit finetune`` killed (SIGKILL) after its first epoch resumes from its checkpoint when the
same command runs again and writes the weights an uninterrupted run writes; other settings are
refused, naming them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from finetune_fixtures import FAST, LABEL_REGEX
from safetensors.torch import load_file

from protkit.cli.main import main
from protkit.embed.parts import work_dir
from protkit.finetune.checkpoints import checkpoint_files
from protkit.models.names import WEIGHTS_FILE

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # every run: the same arithmetic
WAIT_SECONDS = 300


def arguments(model_dir: Path, train: Path, output: Path) -> list[str]:
    return ["-q", "finetune", "--model", str(model_dir), "--train", str(train), "--label-regex", LABEL_REGEX,
            "--output", str(output), "--epochs", "5", "--patience", "0", "--no-baselines", *FAST]


def start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "protkit.cli.main", *args], env=ONE_THREAD,
                                stdout=subprocess.DEVNULL, stderr=handle)


def test_killed_run_resumes_to_the_same_weights(model_dir: Path, synthetic_fastas: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    train = synthetic_fastas["train"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = start(arguments(model_dir, train, whole), tmp_path / "whole.log")
    victim = start(arguments(model_dir, train, killed), tmp_path / "killed.log")
    deadline = time.monotonic() + WAIT_SECONDS
    while not checkpoint_files(work_dir(killed)):
        assert victim.poll() is None, f"it ended before a checkpoint: {(tmp_path / 'killed.log').read_text()}"
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert not killed.exists() and checkpoint_files(work_dir(killed))

    other = arguments(model_dir, train, killed)
    other[other.index("--lr") + 1] = "1e-3"
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "of a run with other settings (differing: lr)" in err and "--no-resume" in err

    resumed = subprocess.run([sys.executable, "-m", "protkit.cli.main", *arguments(model_dir, train, killed)],
                             env=ONE_THREAD, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert resumed.returncode == 0, resumed.stderr
    assert uninterrupted.wait(timeout=WAIT_SECONDS) == 0, (tmp_path / "whole.log").read_text()
    expected, got = load_file(whole / WEIGHTS_FILE), load_file(killed / WEIGHTS_FILE)
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    curves = [json.loads((d / "metrics.json").read_text())["learning_curve"] for d in (whole, killed)]
    assert [e["train_loss"] for e in curves[0]] == [e["train_loss"] for e in curves[1]] and len(curves[0]) == 5
    assert not work_dir(killed).exists()
