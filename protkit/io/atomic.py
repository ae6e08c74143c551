"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted job therefore never leaves a half-written result under the final name, and a killed
one leaves only ``.NAME.*.tmp`` beside it, which the next writer of that output removes
(:func:`protkit.io.outputs.claim_outputs`). A full disk, a read-only file system or a missing
permission becomes one :class:`~protkit.io.outputs.OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from protkit.io.outputs import OutputError, disk_error


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give the output file's path")
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; give the result the usual umask permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as err:
        written = tmp_path.stat().st_size if tmp_path is not None and tmp_path.exists() else None
        raise _converted(err, path, written) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (an older one is removed)."""
    path = Path(path)
    tmp = None
    old = path.with_name(f".{path.name}.old")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for item in tmp.rglob("*"):  # files written through mkstemp (here or by a library) are 0600
            if item.is_file() and not item.is_symlink() and item.stat().st_mode & 0o777 == 0o600:
                os.chmod(item, 0o666 & ~_umask())
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise _converted(err, path, None) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _converted(err: OSError, path: Path, written: int | None) -> Exception:
    """A disk error writing ``path`` as an OutputError; any other error (such as an unreadable
    input read inside the block) as it is."""
    filename = getattr(err, "filename", None)
    ours = filename is None or Path(filename).parent in (path.parent, path) or Path(filename) == path
    return (disk_error(err, path, written) if ours else None) or err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
