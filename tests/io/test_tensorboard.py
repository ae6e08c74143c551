"""TensorBoard logs when the package is there; training without it (the GPU image has none) warns once."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from protkit.io.tensorboard import NoWriter, scalar_writer


def test_scalars_land_in_an_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    writer = scalar_writer(tmp_path / "tb")
    writer.add_scalar("train/loss", 1.5, 0)
    writer.close()
    assert not isinstance(writer, NoWriter)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_without_tensorboard_training_goes_on_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="protkit.io.tensorboard"):
        writer = scalar_writer(tmp_path / "tb")
    writer.add_scalar("train/loss", 1.5, 0)
    writer.close()
    assert isinstance(writer, NoWriter) and not (tmp_path / "tb").exists()
    assert "tensorboard package is not installed" in caplog.text and str(tmp_path / "tb") in caplog.text
