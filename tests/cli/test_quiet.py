"""Quiet by default: the import noise of torchao and torch (torchao's absent optional kernels, Triton,
torch's register_constant() deprecation) is dropped at protkit's entry points, the ``protkit`` command
and a workflow job's log, while protkit's own warnings and other messages of those loggers still show."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from protkit.io.logs import IMPORT_NOISE, ImportNoise, quiet_import_noise
from protkit.sequences.fasta import write_fasta

NOISE = ("_C_mxfp8", "_C_cutlass_90a", "Detected no triton", "register_constant()", "KernelPreference", "_pytree.py")
GENUINE = "1 record(s) rejected (not amino acids)"  # protkit.embed.plan's WARNING for the MKJJ12 record
PROTKIT = str(Path(sys.executable).with_name("protkit"))  # the installed command, as a user runs it


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def noise_in(text: str) -> list[str]:
    return [n for n in NOISE if n in text]


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quiet") / "in.fasta"
    write_fasta([("a", "MKVLAAGIVLLLAQWERTY"), ("b", "MKJJ12"), ("c", "MSTNPKPQRKTKRNTNRRPQDVKFPGG")], path)
    return path


@pytest.fixture(scope="module")
def unfiltered_noise(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """What loading the int8 artifact prints on this machine without protkit's entry points (the control)."""
    code = ("import logging; logging.basicConfig()\n"
            "from protkit.models.prothash.int8 import load_quantized\n"
            f"load_quantized({str(model_dir / 'int8')!r})\n")
    result = run_python(code, tmp_path_factory.mktemp("control"))
    assert result.returncode == 0, result.stderr
    return noise_in(result.stderr)


def test_help_is_quiet(tmp_path: Path) -> None:
    result = subprocess.run([PROTKIT, "embed", "--help"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0 and "--int8" in result.stdout
    assert result.stderr == ""


def test_int8_embed_is_quiet_but_keeps_protkit_warnings(model_dir: Path, fasta: Path, tmp_path: Path,
                                                        unfiltered_noise: list[str]) -> None:
    if not unfiltered_noise:
        pytest.skip("torchao imports silently on this machine: nothing to filter")
    out = tmp_path / "out.parquet"
    result = subprocess.run(
        [PROTKIT, "embed", "--model", str(model_dir), "--int8", "--backend", "torch",
         "--device", "cpu", "--input", str(fasta), "--output", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    assert noise_in(result.stderr) == []
    assert GENUINE in result.stderr and "WARNING protkit.embed.plan" in result.stderr


def test_workflow_job_log_is_quiet(model_dir: Path, tmp_path: Path, unfiltered_noise: list[str]) -> None:
    if not unfiltered_noise:
        pytest.skip("torchao imports silently on this machine: nothing to filter")
    log = tmp_path / "job.log"
    code = ("import logging\n"
            "from protkit.io.logs import start_job\n"
            f"start_job({str(log)!r}, 1)\n"
            "from protkit.models.prothash.int8 import load_quantized\n"
            f"load_quantized({str(model_dir / 'int8')!r})\n"
            "logging.getLogger('protkit.test').warning('a genuine warning')\n"
            "logging.getLogger('torchao').warning('Failed to load /x/torchao/_C.so: a library protkit needs')\n")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    assert noise_in(result.stderr + text) == []  # neither in the log nor on the terminal (torch's own handler)
    assert "WARNING protkit.test: a genuine warning" in text
    assert "WARNING torchao: Failed to load /x/torchao/_C.so: a library protkit needs" in text


def test_filters_drop_only_the_listed_messages(caplog: pytest.LogCaptureFixture) -> None:
    quiet_import_noise()
    quiet_import_noise()  # installed once
    try:
        assert [sum(isinstance(f, ImportNoise) for f in logging.getLogger(n).filters) for n in IMPORT_NOISE] == [1] * 3
        with caplog.at_level(logging.WARNING):
            torchao = logging.getLogger("torchao")
            torchao.warning("Failed to load /v/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: gone")
            torchao.warning("Failed to load /v/site-packages/torchao/_C_cutlass_90a.abi3.so: gone")
            logging.getLogger("torchao.kernel.intmm").warning(
                "Warning: Detected no triton, on systems without Triton certain kernels will not work")
            logging.getLogger("torch.utils._pytree").warning(
                "%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type. "
                "Calling register_constant() on Enum subclasses is deprecated and will be an error in a future "
                "release.", "<enum 'KernelPreference'>")
            logging.getLogger("torch.utils._pytree").warning(
                "%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type. "
                "Calling register_constant() on Enum subclasses is deprecated and will be an error in a future "
                "release.", "<enum 'ScaleCalculationMode'>")  # torchao's, when QAT prepares a model
            torchao.warning("Failed to load /v/site-packages/torchao/_C.so: gone")  # not optional: kept
            logging.getLogger("torch.utils._pytree").warning("%s is an Enum subclass and is now natively supported "
                                                             "by torch.compile", "<enum 'Theirs'>")
            logging.getLogger("torchao.kernel.intmm").warning("another message")
        assert caplog.messages == ["Failed to load /v/site-packages/torchao/_C.so: gone",
                                   "<enum 'Theirs'> is an Enum subclass and is now natively supported by torch.compile",
                                   "another message"]
    finally:
        for name in IMPORT_NOISE:
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if isinstance(f, ImportNoise)]:
                logger.removeFilter(f)
