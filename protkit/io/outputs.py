"""The output policy every command and pipeline function follows before it writes.

:func:`claim_outputs` refuses an output that resolves to one of the inputs (the same path, a hard
link or a symlink to it), two outputs that coincide, and a directory where a file is written (or a
file where a directory is); then it takes an exclusive lock per output, so a second writer of the
same output stops at once with a clear message instead of racing; then it removes what a killed
writer of that output left (``.NAME.*.tmp`` and ``.NAME.old`` beside it). A full disk, a read-only
file system or a missing permission while writing becomes one :class:`OutputError` naming the path
(:func:`disk_error`), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Sequence

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")  # pyarrow's OSErrors carry the errno only in their text


class OutputError(ValueError):
    """An output protkit will not or cannot write; the message names the path and what to do.
    ``reason``: ``space``, ``read-only`` or ``permission`` for disk errors, else None."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


def error_number(err: OSError) -> int | None:
    """The errno of ``err``, also when a library kept it only in the message."""
    if err.errno is not None:
        return err.errno
    found = _ERRNO_IN_TEXT.search(str(err))
    return int(found.group(1)) if found else None


def disk_error(err: OSError, path: str | Path, written: int | None = None) -> OutputError | None:
    """An :class:`OutputError` for a full disk, a read-only file system or a missing permission
    met while writing ``path`` (``written``: bytes written before it happened); None for other errors."""
    code = error_number(err)
    if code not in DISK_ERRNOS:
        return None
    path = Path(path)
    where = _existing_parent(path)
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(where).free
        so_far = f"; {size_text(written)} were written before the disk filled" if written else ""
        return OutputError(f"{path}: no space left on the device ({size_text(free)} free in {where}{so_far}); free "
                           "some space there or write the output elsewhere", "space")
    if code == errno.EROFS:
        return OutputError(f"{path}: the file system of {where} is read-only; write the output elsewhere", "read-only")
    return OutputError(f"{path}: permission denied: this user (uid {os.getuid()}) cannot write in {where}; "
                       "write the output elsewhere or change the directory's permissions", "permission")


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(".")


def size_text(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n:,} bytes"


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name one file or directory (one path, a symlink, a hard link)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(files: Sequence[str | Path], directories: Sequence[str | Path] = (),
                  inputs: Iterable[str | Path] = ()) -> None:
    """OutputError unless every output is a new path of the right kind, none is an input and no two coincide."""
    outputs = [(Path(p), "file") for p in files] + [(Path(p), "directory") for p in directories]
    inputs = [Path(p) for p in inputs if p is not None]
    for i, (path, kind) in enumerate(outputs):
        for source in inputs:
            if same_file(path, source):
                raise OutputError(f"{path}: this output is the input {source}; writing it would destroy the input. "
                                  "Choose another output path")
        for other, _ in outputs[:i]:
            if same_file(path, other):
                raise OutputError(f"{path}: named for two outputs ({other} too); give each output its own path")
        if kind == "file" and path.is_dir():
            raise OutputError(f"{path}: is a directory; give the output file's path (e.g. {path / 'out.parquet'})")
        if kind == "directory" and path.exists() and not path.is_dir():
            raise OutputError(f"{path}: is a file; this output is a directory: give a new or a directory path")


def lock_path(path: str | Path) -> Path:
    """The lock file of output ``path`` (beside it, hidden)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def stale_files(path: str | Path) -> list[Path]:
    """What killed writers of output ``path`` leave beside it: temporary files and directories
    (``.NAME.*.tmp``) and a replaced directory (``.NAME.old``)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = glob_escape(path.name)
    return sorted([*path.parent.glob(f".{name}.*.tmp"), *path.parent.glob(f".{name}.old")])


def glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold the lock of output ``path`` (OutputError at once if another process holds it)."""
    lock = lock_path(path)
    made = [d for d in (lock.parent, *lock.parent.parents) if not d.exists()]  # removed again if left empty
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for directory in made:
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise OutputError(f"{path}: another protkit run is writing this output now (it holds {lock}); wait for "
                              "it to finish or write elsewhere") from None
        if lock.exists() and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the lock file was removed and made anew meanwhile: lock the new one
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim_outputs(files: Sequence[str | Path] = (), directories: Sequence[str | Path] = (),
                  inputs: Iterable[str | Path] = ()) -> Iterator[None]:
    """Check the outputs (:func:`check_outputs`), lock each, remove what killed writers left, and turn
    disk errors met inside the block into :class:`OutputError` naming the output."""
    outputs = [Path(p) for p in (*files, *directories) if p is not None]
    check_outputs([p for p in files if p is not None], [p for p in directories if p is not None], inputs)
    with contextlib.ExitStack() as stack:
        try:
            for path in outputs:
                stack.enter_context(exclusive(path))
                for leftover in stale_files(path):
                    remove(leftover)
            yield
        except OSError as err:
            converted = disk_error(err, Path(err.filename) if getattr(err, "filename", None) else outputs[0])
            if converted is None:
                raise
            raise converted from None
