"""Progress off a terminal: periodic log lines (done / total, rate, ETA) instead of a hidden bar, so a
SLURM job's log shows how far a long run got."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protkit.io.progress import INTERVAL_VARIABLE, progress_bar

LINE = re.compile(r"embed \S+: [\d.]+k?/[\d.]+k? res \(\d+%\), [\d.]+k? ?res/s, elapsed \d\d:\d\d, ETA \d\d:\d\d")


def test_off_a_terminal_progress_is_logged_at_most_every_interval(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, "0.05")
    with caplog.at_level(logging.INFO, logger="protkit.progress"):
        with progress_bar(total=10, desc="work", unit="step") as bar:
            for _ in range(10):
                time.sleep(0.02)
                bar.update(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "protkit.progress"]
    assert lines[0].startswith("work: 0/10 step (0%)") and lines[-1].startswith("work: 10/10 step (100%)")
    assert 3 <= len(lines) <= 7, lines  # start, every ~0.05 s of the 0.2 s, end: not every update
    assert all("\r" not in line and "ETA" in line for line in lines)


def test_a_postfix_each_step_adds_no_lines(caplog: pytest.LogCaptureFixture) -> None:
    """A training loop sets the loss as a postfix after every step; off a terminal that must not log
    a line per step (tqdm refreshes on set_postfix), only the timed ones, which then show the loss."""
    with caplog.at_level(logging.INFO, logger="protkit.progress"):
        with progress_bar(total=500, desc="distil", unit="step") as bar:
            for step in range(500):
                bar.update(1)
                bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
                bar.set_postfix_str(f"epoch {step // 100}")
    lines = [r.getMessage() for r in caplog.records if r.name == "protkit.progress"]
    assert len(lines) <= 3, lines  # start and end (30 s between lines by default)
    assert lines[-1].startswith("distil: 500/500 step (100%)")


def test_without_a_total_the_count_and_rate_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="protkit.progress"):
        assert list(progress_bar(iter(range(5)), desc="blocks", unit="block")) == list(range(5))
    assert caplog.records[-1].getMessage().startswith("blocks: 5 block, ")


def test_embed_with_stderr_in_a_file_logs_progress_lines(model_dir: Path, tmp_path: Path) -> None:
    from protkit.io.paths import resolve_data_path

    proteome = resolve_data_path("pyhmmer:tests/data/seqs/938293.PRJEB85.HG003687.faa")
    log = tmp_path / "job.log"
    env = {**os.environ, INTERVAL_VARIABLE: "0.2"}
    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-m", "protkit.cli.main", "embed", "--model", str(model_dir),
                               "--input", str(proteome), "--output", str(tmp_path / "out.parquet"),
                               "--max-tokens", "2048"], stderr=stderr, env=env, timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    lines = [line for line in text.splitlines() if LINE.search(line)]
    assert len(lines) >= 3, text[-2000:]
    assert "(100%)" in lines[-1] and "\r" not in text
