"""What the GPU machine runs: device, versions, and which of protkit's packages import.

    python -m benchmarks.gpu.environment --out DIR      # writes DIR/environment.json and DIR/environment.md
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from pathlib import Path

import torch

from benchmarks.common import today

MODULES = ("protkit", "torchao", "snakemake", "faiss", "matplotlib", "pyhmmer", "peft", "transformers",
           "onnxruntime", "sklearn", "pyarrow", "pandas", "safetensors", "esm", "datasets", "onnx")


def versions() -> dict[str, str]:
    """``module -> version`` for each of ``MODULES``, or ``missing (<error>)``."""
    found = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            found[name] = str(getattr(module, "__version__", "present"))
        except Exception as err:  # any import failure is a finding to report, not to crash on
            found[name] = f"missing ({type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''})"
    return found


def facts() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "cuda": torch.version.cuda, "torch": torch.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "modules": versions(), "date": today(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    found = facts()
    (args.out / "environment.json").write_text(json.dumps(found, indent=1) + "\n")
    lines = [f"- device: {found['device']}" + (f", {found['gpu_memory_gib']} GiB" if found["gpu_memory_gib"] else ""),
             f"- torch {found['torch']} (CUDA {found['cuda']}), Python {found['python']}, {found['cpus']} CPUs",
             "- modules: " + ", ".join(f"{k} {v}" for k, v in found["modules"].items())]
    (args.out / "environment.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    missing = [k for k, v in found["modules"].items() if v.startswith("missing") and k in MODULES[:7]]
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
