"""An embedding run's work directory (``OUTPUT.partial/``): its identity, finished parts, the merge.

``run.json`` records the run's fingerprint (:func:`~protkit.embed.settings.run_identity`); one parquet
file per part (and one of per-residue vectors) is written atomically as the part finishes, carrying
the digest of the run's fingerprint and its rows (:func:`part_key`). A re-run with the same identity
skips finished parts; another is refused, naming what differs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protkit.embed.embedder import Embedder, EmbedError, embed_token_lists
from protkit.embed.plan import Row
from protkit.embed.residues import residues_table
from protkit.embed.settings import EmbedSettings
from protkit.io.atomic import atomic_path, write_json
from protkit.io.columns import vector_column
from protkit.io.digests import json_sha256
from protkit.io.metadata import FileFormatError, protkit_schema, read_protkit_metadata, write_parquet
from protkit.io.outputs import OutputError, size_text
from protkit.sequences.tokenize import encode_one

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
DESCRIPTION_COLUMN = "description"  # header text after the id; read by protkit.search.vectors (DESCRIPTION)



def work_dir(out_parquet: str | Path) -> Path:
    """Where finished parts of an unfinished run wait: ``OUTPUT.partial/``."""
    out = Path(out_parquet)
    return out.with_name(out.name + ".partial")


def run_fingerprint(identity: dict) -> str:
    """The fingerprint of a run (its identity's digest): recorded in run.json and in every part."""
    return json_sha256(identity)


def open_work_dir(directory: Path, identity: dict, resume: bool) -> None:
    """Create ``directory`` for this run, or check that an existing one belongs to the same run."""
    run_file = directory / RUN_FILE
    if directory.exists() and not resume:
        shutil.rmtree(directory)
    if run_file.is_file():
        try:
            recorded = json.loads(run_file.read_text())
        except json.JSONDecodeError:
            recorded = {}
        if recorded.get("fingerprint") != run_fingerprint(identity):
            before = recorded.get("identity", {})
            diffs = [f"{k}: {before.get(k)!r} -> {identity[k]!r}" for k in identity if before.get(k) != identity[k]]
            raise EmbedError(
                f"{directory} holds an unfinished run with other arguments (run fingerprint "
                f"{str(recorded.get('fingerprint'))[:12]}, this run {run_fingerprint(identity)[:12]}; differs in "
                f"{'; '.join(diffs) or 'unknown settings'}). Re-run with the same arguments to resume it, "
                f"or start over with --no-resume (or delete {directory})"
            )
        log.info("resuming the unfinished run in %s", directory)
        return
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink()
    write_json(run_file, {"fingerprint": run_fingerprint(identity), "identity": identity})


def part_names(index: int) -> tuple[str, str]:
    return f"part-{index:05d}.parquet", f"residues-{index:05d}.parquet"


def part_key(rows: Sequence[Row], run: str) -> str:
    """What a part holds: the run's fingerprint (model, settings, input) and the positions, ids,
    descriptions and sequences of its rows. A part is reused only under this key, so no state of the
    work directory (its run.json lost, parts of another run or of a protkit that wrote no
    descriptions left behind) can mix models, settings or columns."""
    return json_sha256([run, [[r.position, r.record.id, r.description, r.sequence] for r in rows]])


def part_done(directory: Path, index: int, key: str, per_residue: bool) -> bool:
    """True when the part's file(s) exist, are readable and hold the rows ``key`` names."""
    names = part_names(index)[: 2 if per_residue else 1]
    for name in names:
        try:
            meta = read_protkit_metadata(directory / name, required=False)
        except (OSError, FileFormatError):
            return False
        if meta.get("part_key") != key:
            return False
    return True


def embed_part(
    embedder: Embedder, rows: Sequence[Row], s: EmbedSettings, directory: Path, index: int, key: str,
    on_batch: Callable[[int], None], descriptions: bool = False,
) -> None:
    """Embed one part (identical sequences once) and write its file(s) atomically; ``descriptions``:
    with a ``description`` column (the run's records have some)."""
    unique: dict[str, int] = {}
    tokens: list[list[int]] = []
    for row in rows:
        if row.sequence not in unique:
            unique[row.sequence] = len(tokens)
            tokens.append(encode_one(row.sequence, s.max_length))
    pooled, per_residue = embed_token_lists(embedder.runner, tokens, s.poolings, embedder.dim, s.max_tokens,
                                            embedder.device, residues=s.per_residue, on_batch=on_batch)
    which = np.asarray([unique[r.sequence] for r in rows], dtype=np.int64)
    columns = {
        "id": pa.array([r.record.id for r in rows], type=pa.string()),
        **({DESCRIPTION_COLUMN: pa.array([r.description for r in rows], type=pa.string())} if descriptions else {}),
        "length": pa.array([len(r.sequence) for r in rows], type=pa.int32()),
        "truncated": pa.array([r.truncated for r in rows], type=pa.bool_()),
    }
    if s.concatenate:
        side_by_side = np.concatenate([pooled[p] for p in s.poolings], axis=1)  # (N, len(poolings) * D)
        columns[s.columns[0]] = vector_column(side_by_side[which], s.store_dtype)
    else:
        for p in s.poolings:
            columns[p] = vector_column(pooled[p][which], s.store_dtype)
    if s.shard is not None:
        columns["index"] = pa.array([r.position for r in rows], type=pa.int64())
    meta = {"part_key": key, "n_unique": len(tokens)}
    pooled_name, residues_name = part_names(index)
    if per_residue is not None:
        table = residues_table(columns["id"].to_pylist(), columns["truncated"].to_pylist(),
                               [per_residue[i] for i in which], embedder.dim, s.store_dtype)
        write_parquet(table, meta, directory / residues_name)
    write_parquet(pa.table(columns), meta, directory / pooled_name)


def keep_or_remove(directory: Path, error: OutputError, needed: int) -> OutputError:
    """After a failed write: keep ``directory`` when it holds finished parts (and say so, a re-run
    resumes from them), else remove it; returns the error to raise (``needed``: bytes the run writes,
    told when the disk is full)."""
    message = f"{error}" + (f" (this run writes about {size_text(needed)})" if error.reason == "space" else "")
    finished = sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []
    if not finished:
        shutil.rmtree(directory, ignore_errors=True)
        return OutputError(message, error.reason)
    return OutputError(f"{message}. The {len(finished)} finished part(s) stay in {directory}: re-run the same command "
                       "to resume from them (or delete the directory)", error.reason)


def merge_parts(part_paths: Sequence[Path], meta: dict, out_parquet: str | Path) -> None:
    """Concatenate part files into ``out_parquet`` (atomically), one part in memory at a time."""
    schema = protkit_schema(pq.read_schema(part_paths[0]), meta)
    with atomic_path(out_parquet) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for path in part_paths:
                writer.write_table(pq.read_table(path).replace_schema_metadata(schema.metadata))
