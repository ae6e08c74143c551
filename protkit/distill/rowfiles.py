"""Arrays and strings on disk, read with ``pread``: memory that does not grow with the data.

:class:`RowFile` reads rows of a 2-D ``.npy`` file and :class:`RaggedStrings` single strings of a
concatenated UTF-8 file. Reads use ``pread`` rather than ``np.memmap`` on purpose: pages of a
mapped file count in the process's resident set once touched, and the adapter fit reads the whole
train split. :func:`data_sha256` and :func:`column_mean` read either in blocks.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

CHUNK_BYTES = 8 << 20  # sequential reads (digests, means) go this many bytes at a time


class RowFile:
    """Rows of a 2-D C-order ``.npy`` file, read with ``pread``: ``rows[indices]`` (any int array)
    and ``rows[start:stop]`` return an in-memory array in the file's dtype."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            self.offset = handle.tell()
        if len(shape) != 2 or fortran:
            raise ValueError(f"{self.path}: expected a 2-D C-order array, found shape {shape}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("RowFile slices take no step")
            out = np.empty((max(0, stop - start), self.shape[1]), self.dtype)
            self._read_into(out, start)
            return out
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"{self.path}: row index out of range 0..{len(self) - 1}")
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        for j, row in enumerate(rows.tolist()):
            self._read_into(out[j : j + 1], row)
        return out

    def _read_into(self, out: np.ndarray, start: int) -> None:
        view, position = memoryview(out).cast("B"), self.offset + start * self.row_bytes
        while len(view):
            got = os.preadv(self._fd, [view], position)
            if got == 0:
                raise EOFError(f"{self.path} is truncated; delete it to rebuild the store")
            view, position = view[got:], position + got

    def chunks(self) -> Iterator[np.ndarray]:
        """Consecutive blocks of rows, in order (about CHUNK_BYTES each)."""
        step = max(1, CHUNK_BYTES // max(1, self.row_bytes))
        for start in range(0, len(self), step):
            yield self[start : start + step]


class RaggedStrings(Sequence[str]):
    """UTF-8 strings concatenated in ``{name}.bin`` with ``{name}.offsets.npy`` (``n + 1`` int64);
    item access reads one string with ``pread``; iteration reads the file in blocks."""

    def __init__(self, directory: str | Path, name: str):
        self.path = Path(directory) / f"{name}.bin"
        self.offsets = np.load(Path(directory) / f"{name}.offsets.npy")  # (n + 1,) int64
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return os.pread(self._fd, stop - start, start).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        first = 0
        while first < len(self):
            last = int(np.searchsorted(self.offsets, self.offsets[first] + CHUNK_BYTES, side="right")) - 1
            last = min(len(self), max(last, first + 1))
            base = int(self.offsets[first])
            block = os.pread(self._fd, int(self.offsets[last]) - base, base)
            for i in range(first, last):
                yield block[self.offsets[i] - base : self.offsets[i + 1] - base].decode("utf-8")
            first = last


def data_sha256(sequences: Sequence[str], targets: Mapping[str, np.ndarray | RowFile]) -> str:
    """sha256 over the sequences (one per line) then, per pooling in name order, the name and the
    float32 bytes of its ``(N, D)`` targets: a fingerprint of a training split, read in blocks."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(seq.encode() + b"\n")
    for pooling in sorted(targets):
        digest.update(pooling.encode())
        for block in _blocks(targets[pooling]):
            digest.update(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _blocks(array: np.ndarray | RowFile) -> Iterator[np.ndarray]:
    if isinstance(array, RowFile):
        yield from array.chunks()
    else:
        yield array


def column_mean(array: np.ndarray | RowFile) -> np.ndarray:
    """Mean row in float64, read in blocks; an array in memory or of one block gives exactly
    ``float32 array.mean(0, dtype=float64)``.  # (D,)"""
    if not isinstance(array, RowFile) or len(array) * array.row_bytes <= CHUNK_BYTES:
        return np.asarray(array[:], dtype=np.float32).mean(axis=0, dtype=np.float64)
    total = np.zeros(array.shape[1], dtype=np.float64)
    for block in array.chunks():
        total += block.astype(np.float32).sum(axis=0, dtype=np.float64)
    return total / len(array)
