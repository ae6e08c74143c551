"""Peak resident memory of a fresh process: a probe (``python -c CODE ARGS``) runs under a small
launcher process, and its peak is the launcher's ``getrusage(RUSAGE_CHILDREN).ru_maxrss``.

A child inherits the peak RSS of the process it was forked from (Linux keeps ``maxrss`` across fork
and exec), so a benchmark with torch loaded must not start the measured process itself. A probe
prints one JSON line last (with ``vmhwm_kb``, its own ``VmHWM``, from :data:`STATUS`'s ``status_kb``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

from benchmarks.common import REPO_ROOT, Goal

LAUNCHER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-4000:],
                  "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""
STATUS = """
def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
"""


# --- measuring a subprocess --------------------------------------------------------------------
@dataclass
class Peak:
    """What a probe reported, and its peak RSS as its launcher saw it."""

    probe: dict
    ru_maxrss_mb: float
    wall: float

    @property
    def vmhwm_mb(self) -> float:
        return self.probe["vmhwm_kb"] * 1024 / 1e6


def launch(code: str, args: Sequence[str]) -> subprocess.Popen:
    """Start ``python -c code args`` under the launcher (output on a pipe)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-c", code, *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)


def finish(process: subprocess.Popen, what: str, start: float) -> Peak:
    """Wait for a launched probe; RuntimeError with its stderr if it failed."""
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{what}: launcher failed (exit {process.returncode}): {stderr.strip()[-2000:]}")
    launched = json.loads(stdout.strip().splitlines()[-1])
    if launched["returncode"] != 0:
        raise RuntimeError(f"{what} failed (exit {launched['returncode']}): {launched['stderr'].strip()[-2000:]}")
    probe = json.loads(launched["stdout"].strip().splitlines()[-1])
    return Peak(probe, launched["ru_maxrss_kb"] * 1024 / 1e6, wall)


def measure(code: str, args: Sequence[str], what: str) -> Peak:
    start = time.perf_counter()
    return finish(launch(code, args), what, start)


def mb(value: float) -> str:
    return f"{value:,.0f} MB"




@dataclass
class LimitGoal(Goal):
    """A goal on a ceiling: ``measured <= target`` (peak memory, or a ratio of peaks)."""

    unit: str = "MB"

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured <= self.target and self.condition_met

    def row(self) -> list[str]:
        row = super().row()
        shown = (lambda v: f"{v:.2f}x") if self.unit == "x" else (lambda v: f"{v / 1000:.2f} GB")
        row[1] = f"<= {shown(self.target)}"
        row[2] = "n/a" if self.measured is None else shown(self.measured)
        return row
