"""Prepare what the GPU run carries to the device: wheels its image lacks, and the DeepLoc proteins.

    python benchmarks/gpu/carry.py                  # Python 3.12 wheels into .gpu/ (the device's Python)
    python benchmarks/gpu/carry.py --python 3.11    # the same list for this machine's Python (the CPU proof)

The device has no package registry. Its image holds Python 3.12, torch 2.11, numpy, pandas, pyarrow,
safetensors, transformers, onnxruntime and scikit-learn; ``benchmarks/gpu/carried.txt`` names the rest,
and ``requirements/lock.txt`` pins their versions (the ones the CPU suite tests). Everything lands in a
git-ignored folder that the device tool's ``carry`` takes along, 64 MiB in all (the tool's limit), which
this script checks. ``benchmarks/gpu/run.sh`` installs from it with ``--no-index``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common import FASTA_FILES

ROOT = Path(__file__).resolve().parents[2]
CARRIED = Path(__file__).with_name("carried.txt")
LOCK = ROOT / "requirements" / "lock.txt"
DEFAULT_DEST = ROOT / ".gpu"
CARRY_LIMIT_BYTES = 64 * 2**20  # the device tool's carry limit, whole folder
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def normalized(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def carried_names(path: Path = CARRIED) -> list[str]:
    """The distributions to carry, in file order (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def pinned(names: list[str], lock: Path = LOCK) -> list[str]:
    """``name==version`` for each of ``names`` from the lock file; a name the lock lacks is an error."""
    versions = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            versions[normalized(name)] = version.strip()
    missing = [n for n in names if normalized(n) not in versions]
    if missing:
        raise SystemExit(f"carry: error: {lock} pins no version of {', '.join(missing)} (named in {CARRIED})")
    return [f"{n}=={versions[normalized(n)]}" for n in names]


def download(requirement: str, python: str, wheels: Path) -> None:
    """The binary wheel of exactly ``requirement`` (no dependencies) for ``python`` on x86_64 Linux; a
    release published only as source is built here, and must build to a pure-Python wheel."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                              "--python-version", python, *platforms, "--dest", str(wheels), requirement],
                             capture_output=True, text=True)
    if fetched.returncode == 0:
        return
    before = set(wheels.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), requirement],
                   check=True, capture_output=True, text=True)
    built = set(wheels.glob("*.whl")) - before
    if not all(w.name.endswith("-py3-none-any.whl") for w in built):
        raise SystemExit(f"carry: error: {requirement} has no wheel for Python {python} and builds to "
                         f"{', '.join(w.name for w in built)}, not a pure-Python wheel")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default="3.12", help="the Python version the wheels are for (device: 3.12)")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="carried folder (default: .gpu/)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding the DeepLoc FASTA (default: ../shared/data)")
    args = parser.parse_args(argv)
    wheels = args.dest / f"wheels-py{args.python}"
    if wheels.exists():
        shutil.rmtree(wheels)  # a fresh download: no stale versions beside the pinned ones
    wheels.mkdir(parents=True)
    requirements = pinned(carried_names())
    for requirement in requirements:
        download(requirement, args.python, wheels)
    (wheels / "requirements.txt").write_text("\n".join(requirements) + "\n")
    data = args.dest / "data"
    data.mkdir(exist_ok=True)
    for name in FASTA_FILES:  # what the benchmarks' load_proteins reads
        if (args.data / name).is_file():
            shutil.copyfile(args.data / name, data / name)
        else:
            print(f"carry: warning: {args.data / name} is absent: the GPU run's real-protein parts will skip")
    total = folder_bytes(args.dest)
    print(f"carry: {len(requirements)} wheels for Python {args.python} in {wheels}; "
          f"{args.dest} holds {total / 2**20:.1f} MiB (limit {CARRY_LIMIT_BYTES / 2**20:.0f} MiB)")
    if total > CARRY_LIMIT_BYTES:
        print(f"carry: error: {args.dest} is {total / 2**20:.1f} MiB, over the device tool's "
              f"{CARRY_LIMIT_BYTES / 2**20:.0f} MiB; trim {CARRIED} or remove another wheels-py* folder", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
