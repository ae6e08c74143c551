"""Teacher targets on disk, read a batch at a time: memory that does not grow with the cache.

A teacher cache holds its pooled vectors in parquet shards (:mod:`protkit.teacher`); loading them all
as float32 needs ``N * D * 4`` bytes per pooling (~400 GB for UniRef50 at 960 dims). Instead,
:func:`target_store` converts the cache once, shard by shard, into a store directory (default:
``targets/`` in the distillation's checkpoint directory) holding per split (``train``, ``test``),
in cache row order:

- ``{pooling}.npy``: ``(n, D)`` vectors in the cache's store dtype (fp16 or fp32), written with file
  writes (never mapped), read with ``pread`` (:class:`~protkit.distill.rowfiles.RowFile`): a batch's rows are read and
  converted to float32 on the fly, exactly the values ``load_pooled`` gives;
- ``sequences.bin`` / ``ids.bin`` with ``*.offsets.npy`` (:class:`~protkit.distill.rowfiles.RaggedStrings`);
- ``lengths.npy``: token counts (CLS/EOS included) at the cache's ``max_length``.

``store.json`` (written last) records the key (store format, cache fingerprint, shard list and rows
digests, poolings, the sequences file's sha256) and the train split's data digest; a store whose key
differs is rebuilt, one whose key matches is reused. The whole store is built in a temporary
directory and renamed into place, so an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protkit.distill.rowfiles import RaggedStrings, RowFile, data_sha256
from protkit.io.atomic import atomic_dir, write_json
from protkit.io.columns import STORE_DTYPES, column_vectors
from protkit.io.digests import file_sha256
from protkit.io.metadata import read_protkit_metadata
from protkit.sequences.tokenize import encode_one
from protkit.teacher.layout import read_manifest
from protkit.teacher.read import cache_index

STORE_FORMAT = 1
STORE_FILE = "store.json"
SPLITS = ("train", "test")


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
    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    manifest = read_manifest(cache_dir)
    poolings = [p for p in poolings if p in manifest["poolings"]]
    key = {
        "format": STORE_FORMAT,
        "fingerprint": manifest["fingerprint"],
        "shards": manifest["shards"],
        "rows_sha256": [read_protkit_metadata(cache_dir / name, required=False).get("rows_sha256")
                        for name in manifest["shards"]],
        "n_sequences": manifest["n_sequences"],
        "max_length": manifest["max_length"],
        "poolings": poolings,
        "sequences_sha256": file_sha256(sequences_parquet),
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


def _build(sequences_parquet: Path, cache_dir: Path, manifest: dict, poolings: list[str], out: Path) -> None:
    """Write both splits' files into ``out``, one cache shard at a time."""
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
        found = read_protkit_metadata(path, required=False).get("fingerprint")
        if found != manifest["fingerprint"]:
            raise ValueError(f"teacher cache {cache_dir}: {path.name} has fingerprint {found} but manifest.json "
                             f"has {manifest['fingerprint']}; rerun teacher_cache")
        ids = table.column("id").to_pylist()
        seqs = sequences(ids)
        splits = np.asarray(table.column("split").to_pylist())
        vectors = {p: column_vectors(table.column(p), dim) for p in poolings}  # (n, D) store dtype
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
