"""Teacher targets on disk, read a batch at a time: memory that does not grow with the cache.

A teacher cache holds its pooled vectors in parquet shards (:mod:`protkit.cache`); loading them all
as float32 needs ``N * D * 4`` bytes per pooling (~400 GB for UniRef50 at 960 dims). Instead,
:func:`target_store` converts the cache once, shard by shard, into a store directory (default:
``targets/`` in the distillation's checkpoint directory) holding per split (``train``, ``test``),
in cache row order:

- ``{pooling}.npy``: ``(n, D)`` vectors in the cache's store dtype (fp16 or fp32), written with file
  writes (never mapped), read with ``pread`` (:class:`RowFile`): a batch's rows are read and
  converted to float32 on the fly, exactly the values ``load_pooled`` gives;
- ``sequences.bin`` / ``ids.bin`` with ``*.offsets.npy`` (:class:`RaggedStrings`);
- ``lengths.npy``: token counts (CLS/EOS included) at the cache's ``max_length``.

``store.json`` (written last) records the key (store format, cache fingerprint, shard list and rows
digests, poolings, the sequences file's sha256) and the train split's data digest; a store whose key
differs is rebuilt, one whose key matches is reused. The whole store is built in a temporary
directory and renamed into place, so an interrupted build leaves nothing half-written.

Reads use ``pread`` rather than ``np.memmap`` on purpose: pages of a mapped file count in the
process's resident set once touched, and the adapter fit reads the whole train split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protkit.atomic import atomic_dir, write_json
from protkit.tokenize import encode_one

STORE_FORMAT = 1
STORE_FILE = "store.json"
SPLITS = ("train", "test")
CHUNK_BYTES = 8 << 20  # sequential reads (digests, means) go this many bytes at a time


# --- readers ---------------------------------------------------------------------------------
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


class CacheRows:
    """Rows ``rows`` (cache row numbers) of one pooling of a teacher cache, read from its parquet
    shards when sliced: ``cache_rows[a:b]`` is ``(b - a, D)`` float32, as ``load_pooled`` gives them.
    The last shard read is kept, so rows in cache order read each shard once."""

    def __init__(self, cache_dir: str | Path, shards: Sequence[str], shard_starts: np.ndarray, pooling: str,
                 dim: int, rows: np.ndarray):
        self.cache_dir, self.shards, self.starts = Path(cache_dir), list(shards), shard_starts  # (S + 1,)
        self.pooling, self.rows = pooling, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), dim)
        self._shard: tuple[int, np.ndarray] | None = None

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        wanted = self.rows[key] if isinstance(key, slice) else self.rows[np.asarray(key, dtype=np.int64)]
        out = np.empty((len(wanted), self.shape[1]), np.float32)
        shard_of = np.searchsorted(self.starts, wanted, side="right") - 1
        for shard in np.unique(shard_of):
            at = shard_of == shard
            out[at] = self._vectors(int(shard))[wanted[at] - self.starts[shard]]
        return out

    def _vectors(self, shard: int) -> np.ndarray:
        if self._shard is None or self._shard[0] != shard:
            column = pq.read_table(self.cache_dir / self.shards[shard], columns=[self.pooling]).column(self.pooling)
            flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            self._shard = (shard, flat.reshape(-1, self.shape[1]))  # (n, D) store dtype
        return self._shard[1]


def cache_index(cache_dir: str | Path, manifest: dict) -> tuple[pa.Array, np.ndarray]:
    """The ids of a teacher cache in row order (arrow) and the first row of each shard (``S + 1``)."""
    ids = [pq.read_table(Path(cache_dir) / name, columns=["id"]).column("id").combine_chunks()
           for name in manifest["shards"]]
    starts = np.concatenate([[0], np.cumsum([len(i) for i in ids])]).astype(np.int64)
    return (pa.concat_arrays(ids) if ids else pa.array([], pa.string())), starts


# --- the store -------------------------------------------------------------------------------
class SplitStore:
    """One split of a store: ``ids``, ``sequences`` (RaggedStrings), ``lengths`` (int32 token
    counts), ``targets`` ``{pooling: RowFile}``."""

    def __init__(self, directory: Path, poolings: Sequence[str]):
        self.directory = directory
        self.ids = RaggedStrings(directory, "ids")
        self.sequences = RaggedStrings(directory, "sequences")
        self.lengths = np.load(directory / "lengths.npy")
        self.targets = {p: RowFile(directory / f"{p}.npy") for p in poolings}

    def __len__(self) -> int:
        return len(self.ids)


class TargetStore:
    """A built store: ``splits`` (``train``, ``test``: :class:`SplitStore`), the cache's ``manifest``,
    and ``train_sha256`` (:func:`data_sha256` of the train split, computed once at build)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.info = json.loads((directory / STORE_FILE).read_text(encoding="utf-8"))
        poolings = self.info["key"]["poolings"]
        self.splits = {s: SplitStore(directory / s, poolings) for s in SPLITS}
        self.manifest = self.info["manifest"]

    @property
    def train_sha256(self) -> str:
        return self.info["train_sha256"]


def target_store(
    sequences_parquet: str | Path, cache_dir: str | Path, poolings: Sequence[str], out_dir: str | Path
) -> TargetStore:
    """The store of ``cache_dir``'s ``poolings`` (those the cache holds) joined with the sequences
    of ``sequences_parquet``, built in ``out_dir`` unless one with the same key is there."""
    from protkit.cache import read_manifest

    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    manifest = read_manifest(cache_dir)
    poolings = [p for p in poolings if p in manifest["poolings"]]
    key = {
        "format": STORE_FORMAT,
        "fingerprint": manifest["fingerprint"],
        "shards": manifest["shards"],
        "rows_sha256": [_shard_meta(cache_dir / name).get("rows_sha256") for name in manifest["shards"]],
        "n_sequences": manifest["n_sequences"],
        "max_length": manifest["max_length"],
        "poolings": poolings,
        "sequences_sha256": _file_sha256(Path(sequences_parquet)),
    }
    info = out_dir / STORE_FILE
    if info.exists() and json.loads(info.read_text(encoding="utf-8")).get("key") == key:
        return TargetStore(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    with atomic_dir(out_dir) as tmp:
        _build(Path(sequences_parquet), cache_dir, manifest, poolings, tmp)
        train = SplitStore(tmp / "train", poolings)
        write_json(tmp / STORE_FILE, {"key": key, "manifest": manifest,
                                      "train_sha256": data_sha256(train.sequences, train.targets),
                                      "counts": {s: len(SplitStore(tmp / s, [])) for s in SPLITS}})
        del train
    pa.default_memory_pool().release_unused()  # the shards' buffers, kept by the pool otherwise
    return TargetStore(out_dir)


def _shard_meta(path: Path) -> dict:
    from protkit.cache import META_KEY

    return json.loads((pq.read_schema(path).metadata or {}).get(META_KEY.encode(), b"{}"))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _build(sequences_parquet: Path, cache_dir: Path, manifest: dict, poolings: list[str], out: Path) -> None:
    """Write both splits' files into ``out``, one cache shard at a time."""
    from protkit.cache import META_KEY, STORE_DTYPES

    shards = [cache_dir / name for name in manifest["shards"]]
    cache_ids, _ = cache_index(cache_dir, manifest)
    if len(cache_ids) != manifest["n_sequences"]:
        raise ValueError(f"teacher cache {cache_dir}: shards hold {len(cache_ids)} rows but manifest.json says "
                         f"{manifest['n_sequences']}; rerun teacher_cache")
    counts = dict.fromkeys(SPLITS, 0)
    for path in shards:
        labels = pq.read_table(path, columns=["split"]).column("split")
        for split in SPLITS:
            counts[split] += int(pc.sum(pc.equal(labels, split)).as_py() or 0)
    dim, dtype = int(manifest["d_model"]), np.dtype(STORE_DTYPES[manifest["store_dtype"]][1])
    writers = {s: _SplitWriter(out / s, counts[s], dim, dtype, poolings, manifest["max_length"]) for s in SPLITS}
    sequences = _sequence_source(sequences_parquet, cache_ids, cache_dir)
    for path in shards:
        table = pq.read_table(path, columns=["id", "split", *poolings])
        found = json.loads((table.schema.metadata or {}).get(META_KEY.encode(), b"{}")).get("fingerprint")
        if found != manifest["fingerprint"]:
            raise ValueError(f"teacher cache {cache_dir}: {path.name} has fingerprint {found} but manifest.json "
                             f"has {manifest['fingerprint']}; rerun teacher_cache")
        ids = table.column("id").to_pylist()
        seqs = sequences(ids)
        splits = np.asarray(table.column("split").to_pylist())
        vectors = {p: table.column(p).combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
                   for p in poolings}  # (n, D) store dtype
        for split, writer in writers.items():
            rows = np.flatnonzero(splits == split)
            writer.append([ids[i] for i in rows], [seqs[i] for i in rows], {p: v[rows] for p, v in vectors.items()})
    for writer in writers.values():
        writer.close()


def _sequence_source(sequences_parquet: Path, cache_ids: pa.Array, cache_dir: Path):
    """A function from a shard's ids to their sequences: streamed when the table lists the cache's
    ids in order (as the pipeline builds it), else looked up in the whole sequence column."""
    table_ids = pq.read_table(sequences_parquet, columns=["id"]).column("id").combine_chunks()
    if table_ids.equals(cache_ids):
        batches = pq.ParquetFile(sequences_parquet).iter_batches(columns=["sequence"], batch_size=8192)
        buffered: list[str] = []

        def streamed(ids: list[str]) -> list[str]:
            while len(buffered) < len(ids):
                buffered.extend(next(batches).column(0).to_pylist())
            taken = buffered[: len(ids)]
            del buffered[: len(ids)]
            return taken

        return streamed
    positions = pc.index_in(cache_ids, value_set=table_ids)
    if positions.null_count:
        missing = cache_ids.filter(pc.is_null(positions)).to_pylist()
        raise ValueError(
            f"{len(missing)} sequence ids of the teacher cache {cache_dir} are not in {sequences_parquet} "
            f"(e.g. {', '.join(missing[:3])}); rebuild the cache for this dataset"
        )
    column = pq.read_table(sequences_parquet, columns=["sequence"]).column("sequence")
    row_of = dict(zip(cache_ids.to_pylist(), positions.to_numpy()))

    def looked_up(ids: list[str]) -> list[str]:
        return column.take(pa.array([row_of[i] for i in ids], pa.int64())).to_pylist()

    return looked_up


class _SplitWriter:
    """Appends rows of one split to its files (targets through plain file writes)."""

    def __init__(self, directory: Path, n: int, dim: int, dtype: np.dtype, poolings: list[str], max_length: int):
        directory.mkdir(parents=True)
        self.directory, self.max_length = directory, max_length
        self.targets = {}
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n, dim)}
        for p in poolings:  # the .npy header, then rows appended by plain writes (nothing mapped)
            self.targets[p] = open(directory / f"{p}.npy", "wb")
            np.lib.format.write_array_header_1_0(self.targets[p], header)
        self.strings = {name: open(directory / f"{name}.bin", "wb") for name in ("ids", "sequences")}
        self.offsets: dict[str, list[np.ndarray]] = {name: [np.zeros(1, np.int64)] for name in self.strings}
        self.ends = dict.fromkeys(self.strings, 0)
        self.lengths: list[np.ndarray] = []

    def append(self, ids: list[str], seqs: list[str], vectors: dict[str, np.ndarray]) -> None:
        for name, values in (("ids", ids), ("sequences", seqs)):
            encoded = [v.encode("utf-8") for v in values]
            self.strings[name].write(b"".join(encoded))
            ends = self.ends[name] + np.cumsum([len(e) for e in encoded], dtype=np.int64)
            self.offsets[name].append(ends)
            self.ends[name] = int(ends[-1]) if len(ends) else self.ends[name]
        self.lengths.append(np.array([len(encode_one(s, self.max_length)) for s in seqs], dtype=np.int32))
        for p, handle in self.targets.items():
            handle.write(np.ascontiguousarray(vectors[p]).tobytes())

    def close(self) -> None:
        for handle in [*self.targets.values(), *self.strings.values()]:
            handle.close()
        for name, parts in self.offsets.items():
            np.save(self.directory / f"{name}.offsets.npy", np.concatenate(parts))
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        np.save(self.directory / "lengths.npy", lengths)
