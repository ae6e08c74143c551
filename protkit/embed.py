"""Embedding FASTA files with a student or the teacher; shared by the CLI and the rules.

Output parquet (one row per kept FASTA record, in FASTA order):

- ``id`` (string), ``length`` (int32, residues of the input sequence), ``truncated`` (bool: only
  the first ``max_length - 2`` residues were embedded);
- one column per pooling (``mean``, ``cls``, ``max``): fixed-size list of ``dim`` float32 or
  float16 (students: their vectors in the teacher's width, ``ProtHash.embed_teacher``);
- key-value metadata under ``protkit`` (JSON, see :func:`read_metadata`): model, kind, model
  fingerprint (sha256 of the weights file), precision, backend, int8 method, poolings, dims,
  max_length, overlength and alphabet policies, dropped and rejected records, protkit version.

Records: sequences are upper-cased and a terminal ``*`` removed; letters outside the amino-acid
alphabet (:mod:`protkit.alphabet`) skip the record (``alphabet="reject"``, listed in the metadata
and the log) or stop the run (``"error"``); a file whose letters are nearly all A/C/G/T/U/N is
refused as DNA/RNA. Per-residue vectors (``per_residue=FILE``) follow :mod:`protkit.residues`.

Work is done in parts of about ``chunk_residues`` residues (consecutive records; identical
sequences in a part are embedded once). Finished parts are kept in ``OUTPUT.partial/`` with the
run's fingerprint, so a killed run re-started with the same arguments resumes there and gives the
same file as an uninterrupted run; other arguments are refused, naming what differs. The outputs
are written atomically once every part is done, then the parts are removed.

Shards (``shard=(index, count)``) take the records whose 0-based position ``i`` has
``i % count == index``; shard files carry an ``index`` column that :func:`gather_shards` uses
to restore FASTA order and then drops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import protkit
from protkit.alphabet import ALPHABET_POLICIES, NucleotideCounter, check_alphabet, clean_sequence
from protkit.atomic import atomic_path, write_json
from protkit.embedder_loading import default_max_tokens
from protkit.embedders import EMBED_POOLINGS, Embedder, EmbedError, embed_token_lists, progress_bar
from protkit.fasta import FastaRecord, read_fasta
from protkit.models.esmc_weights import file_sha256
from protkit.residues import STORE_TYPES, residues_table
from protkit.tokenize import encode_one
from protkit.vectors import METADATA_KEY, write_parquet

log = logging.getLogger(__name__)

OVERLENGTH = ("truncate", "drop", "error")
POOLED_CHUNK_RESIDUES = 1 << 18  # residues per resumable part
RESIDUE_CHUNK_RESIDUES = 1 << 16  # smaller parts when per-residue vectors are kept in memory
RUN_FILE = "run.json"

__all__ = ["EmbedError", "embed_fasta", "embed_shard", "gather_shards", "read_metadata", "shard_records"]


@dataclass
class _Row:
    position: int  # 0-based position in the FASTA file
    record: FastaRecord
    sequence: str  # cleaned, not truncated
    truncated: bool


@dataclass
class _Plan:
    rows: list[_Row] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    n_records: int = 0


# --- FASTA -> plan ---------------------------------------------------------------------------
def shard_records(
    fasta: str | Path | Iterable[FastaRecord], index: int, count: int
) -> list[tuple[int, FastaRecord]]:
    """``(position, record)`` for the records whose 0-based position ``i`` has ``i % count == index``."""
    if count < 1 or not 0 <= index < count:
        raise EmbedError(f"shard index must be in 0..count-1 with count >= 1, got {index} of {count}")
    records = read_fasta(fasta) if isinstance(fasta, (str, Path)) else fasta
    return [(i, r) for i, r in enumerate(records) if i % count == index]


def _plan(
    records: Sequence[tuple[int, FastaRecord]], source: str, max_length: int, overlength: str, alphabet: str,
    sharded: bool = False,
) -> _Plan:
    """Apply the alphabet and over-length policies; refuse nucleotide files and (unless ``sharded``:
    a shard may hold nothing) files with nothing left to embed."""
    plan = _Plan(n_records=len(records))
    nucleotides = NucleotideCounter()
    for position, record in records:
        sequence = clean_sequence(record.sequence)
        nucleotides.add(sequence)
        problem = check_alphabet(sequence)
        if problem is not None:
            reason, detail = problem
            if alphabet == "error":
                raise EmbedError(f"{source} line {record.line}, id {record.id}: {detail} (alphabet policy: error; "
                                 f"'reject' skips such records)")
            plan.rejected.append({"id": record.id, "line": record.line, "reason": reason, "detail": detail})
            continue
        over = len(sequence) + 2 > max_length
        if over and overlength == "error":
            raise EmbedError(
                f"{source} line {record.line}, id {record.id}: {len(sequence)} residues ({len(sequence) + 2} tokens "
                f"with CLS/EOS) exceed max_length {max_length} tokens; use overlength 'truncate' or 'drop', "
                f"or a larger max_length (at most the model's context length)"
            )
        if over and overlength == "drop":
            plan.dropped.append({"id": record.id, "line": record.line, "residues": len(sequence)})
            continue
        plan.rows.append(_Row(position, record, sequence, over))
    if nucleotides.looks_like_nucleotides():
        raise EmbedError(
            f"{source}: looks like DNA/RNA, not protein ({nucleotides.share:.0%} of the first "
            f"{nucleotides.residues:,} letters are A/C/G/T/U/N); translate the genes to protein first"
        )
    for kind, items in (("rejected (not amino acids)", plan.rejected), ("dropped (over-long)", plan.dropped)):
        if items:
            log.warning("%s: %d record(s) %s, e.g. %s", source, len(items), kind,
                        "; ".join(f"line {d['line']}, id {d['id']}" + (f": {d['detail']}" if "detail" in d else "")
                                  for d in items[:5]))
    if not plan.rows and plan.n_records and not sharded:
        raise EmbedError(f"{source}: no record left to embed ({len(plan.rejected)} rejected, "
                         f"{len(plan.dropped)} dropped of {plan.n_records})")
    return plan


def _parts(rows: Sequence[_Row], chunk_residues: int) -> list[list[_Row]]:
    """Consecutive rows grouped into parts of about ``chunk_residues`` residues."""
    parts: list[list[_Row]] = [[]]
    size = 0
    for row in rows:
        if parts[-1] and size + len(row.sequence) > chunk_residues:
            parts.append([])
            size = 0
        parts[-1].append(row)
        size += len(row.sequence)
    return parts


# --- options and the run fingerprint ---------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    poolings: tuple[str, ...]
    max_tokens: int
    max_length: int
    overlength: str
    alphabet: str
    store_dtype: str
    per_residue: bool
    chunk_residues: int
    shard: tuple[int, int] | None


def _check_options(embedder: Embedder, s: _Settings) -> None:
    if not s.poolings or any(p not in EMBED_POOLINGS for p in s.poolings):
        raise EmbedError(
            f"pooling must be one or more of {', '.join(EMBED_POOLINGS)}, got {', '.join(s.poolings) or 'none'}"
        )
    unavailable = [p for p in s.poolings if p not in embedder.poolings]
    if unavailable:
        raise EmbedError(f"model {embedder.source} gives no {', '.join(unavailable)} pooling; "
                         f"it has {', '.join(embedder.poolings)}")
    if s.overlength not in OVERLENGTH:
        raise EmbedError(f"overlength must be one of {', '.join(OVERLENGTH)}, got {s.overlength!r}")
    if s.alphabet not in ALPHABET_POLICIES:
        raise EmbedError(f"alphabet must be one of {', '.join(ALPHABET_POLICIES)}, got {s.alphabet!r}")
    if s.store_dtype not in STORE_TYPES:
        raise EmbedError(f"store_dtype must be one of {', '.join(STORE_TYPES)}, got {s.store_dtype!r}")
    if not 3 <= s.max_length <= embedder.context_length:
        raise EmbedError(f"max_length must be between 3 and the model's context length "
                         f"{embedder.context_length} tokens, got {s.max_length}")
    if s.max_tokens < 1 or s.chunk_residues < 1:
        raise EmbedError(f"max_tokens and chunk_residues must be positive, got {s.max_tokens}, {s.chunk_residues}")
    if s.per_residue and s.shard is not None:
        raise EmbedError("per-residue output is not sharded: embed the whole file (no shard) with per_residue")


def _run_identity(embedder: Embedder, settings: _Settings, input_sha256: str) -> dict:
    """Everything that changes the output: model, settings, input bytes, protkit version."""
    return {
        "model": embedder.source,
        "model_fingerprint": embedder.fingerprint,
        "precision": embedder.precision,
        "quantization": embedder.quantization,
        "backend": embedder.backend,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
        "input_sha256": input_sha256,
        "protkit_version": protkit.__version__,
    }


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def work_dir(out_parquet: str | Path) -> Path:
    """Where finished parts of an unfinished run wait: ``OUTPUT.partial/``."""
    out = Path(out_parquet)
    return out.with_name(out.name + ".partial")


def _open_work_dir(directory: Path, identity: dict, resume: bool) -> None:
    """Create ``directory`` for this run, or check that an existing one belongs to the same run."""
    run_file = directory / RUN_FILE
    if directory.exists() and not resume:
        shutil.rmtree(directory)
    if run_file.is_file():
        try:
            recorded = json.loads(run_file.read_text())
        except json.JSONDecodeError:
            recorded = {}
        if recorded.get("fingerprint") != _digest(identity):
            before = recorded.get("identity", {})
            diffs = [f"{k}: {before.get(k)!r} -> {identity[k]!r}" for k in identity if before.get(k) != identity[k]]
            raise EmbedError(
                f"{directory} holds an unfinished run with other arguments (run fingerprint "
                f"{str(recorded.get('fingerprint'))[:12]}, this run {_digest(identity)[:12]}; differs in "
                f"{'; '.join(diffs) or 'unknown settings'}). Re-run with the same arguments to resume it, "
                f"or start over with --no-resume (or delete {directory})"
            )
        log.info("resuming the unfinished run in %s", directory)
        return
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink()
    write_json(run_file, {"fingerprint": _digest(identity), "identity": identity})


# --- parts -----------------------------------------------------------------------------------
def _part_names(index: int) -> tuple[str, str]:
    return f"part-{index:05d}.parquet", f"residues-{index:05d}.parquet"


def _part_key(rows: Sequence[_Row]) -> str:
    return _digest([[r.position, r.record.id, r.sequence] for r in rows])


def _part_done(directory: Path, index: int, key: str, per_residue: bool) -> bool:
    names = _part_names(index)[: 2 if per_residue else 1]
    for name in names:
        path = directory / name
        try:
            meta = json.loads((pq.read_schema(path).metadata or {}).get(METADATA_KEY, b"{}"))
        except (OSError, pa.ArrowException, json.JSONDecodeError):
            return False
        if meta.get("part_key") != key:
            return False
    return True


def _embed_part(
    embedder: Embedder, rows: Sequence[_Row], s: _Settings, directory: Path, index: int, key: str, on_batch
) -> None:
    """Embed one part (identical sequences once) and write its file(s) atomically."""
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
        "length": pa.array([len(r.sequence) for r in rows], type=pa.int32()),
        "truncated": pa.array([r.truncated for r in rows], type=pa.bool_()),
    }
    for p in s.poolings:
        columns[p] = _vector_column(pooled[p][which], s.store_dtype)
    if s.shard is not None:
        columns["index"] = pa.array([r.position for r in rows], type=pa.int64())
    meta = {"part_key": key, "n_unique": len(tokens)}
    pooled_name, residues_name = _part_names(index)
    if per_residue is not None:
        table = residues_table(columns["id"].to_pylist(), columns["truncated"].to_pylist(),
                               [per_residue[i] for i in which], embedder.dim, s.store_dtype)
        write_parquet(table, meta, directory / residues_name)
    write_parquet(pa.table(columns), meta, directory / pooled_name)


def _vector_column(vectors: np.ndarray, store_dtype: str) -> pa.FixedSizeListArray:
    """(N, D) float32 -> fixed-size-list column of float32/float16."""
    arrow_type, numpy_type = STORE_TYPES[store_dtype]
    flat = vectors.astype(numpy_type).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=arrow_type), vectors.shape[1])


def _merge(part_paths: Sequence[Path], meta: dict, out_parquet: str | Path) -> None:
    """Concatenate part files into ``out_parquet`` (atomically), one part in memory at a time."""
    schema = pq.read_schema(part_paths[0]).with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(out_parquet) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for path in part_paths:
                writer.write_table(pq.read_table(path).replace_schema_metadata(schema.metadata))


# --- the entry point -------------------------------------------------------------------------
def embed_fasta(
    embedder: Embedder,
    fasta: str | Path,
    out_parquet: str | Path,
    *,
    poolings: Sequence[str] = ("mean",),
    max_tokens: int | None = None,
    max_length: int | None = None,
    overlength: str = "truncate",
    alphabet: str = "reject",
    store_dtype: str = "fp32",
    per_residue: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    chunk_residues: int | None = None,
    resume: bool = True,
    metadata: dict | None = None,
) -> Path:
    """Embed a FASTA file into ``out_parquet`` (and ``per_residue``), as the module docstring says.

    ``max_tokens``: padded tokens per batch (default: :func:`~protkit.embedder_loading.default_max_tokens`,
    the fastest measured for the device). ``max_length``: tokens incl. CLS/EOS (default: the model's
    context length). ``overlength``: ``truncate`` (keep the N-terminal residues), ``drop`` (leave
    out, listed in the metadata) or ``error``. ``alphabet``: ``reject`` or ``error``.
    ``resume=False`` discards an unfinished run. ``metadata``: extra entries for the ``protkit`` metadata.
    """
    settings = _Settings(
        poolings=tuple(poolings), max_tokens=max_tokens or default_max_tokens(embedder),
        max_length=max_length or embedder.context_length, overlength=overlength, alphabet=alphabet,
        store_dtype=store_dtype, per_residue=per_residue is not None,
        chunk_residues=chunk_residues or (RESIDUE_CHUNK_RESIDUES if per_residue else POOLED_CHUNK_RESIDUES),
        shard=tuple(shard) if shard else None,
    )
    _check_options(embedder, settings)
    source = str(fasta)
    records = shard_records(fasta, *(settings.shard or (0, 1)))
    plan = _plan(records, source, settings.max_length, overlength, alphabet, sharded=shard is not None)
    identity = _run_identity(embedder, settings, file_sha256(fasta))
    directory = work_dir(out_parquet)
    _open_work_dir(directory, identity, resume)

    parts = _parts(plan.rows, settings.chunk_residues)
    keys = [_part_key(rows) for rows in parts]
    done = [_part_done(directory, k, key, settings.per_residue) for k, key in enumerate(keys)]
    residues = [min(len(r.sequence), settings.max_length - 2) for r in plan.rows]
    reused = sum(min(len(r.sequence), settings.max_length - 2) for k, rows in enumerate(parts) if done[k] for r in rows)
    with progress_bar(sum(residues), Path(source).name, initial=reused) as bar:
        for k, rows in enumerate(parts):
            if not done[k]:
                _embed_part(embedder, rows, settings, directory, k, keys[k], bar.update)

    part_files = [directory / _part_names(k)[0] for k in range(len(parts))]
    n_unique = sum(json.loads(pq.read_schema(p).metadata[METADATA_KEY])["n_unique"] for p in part_files)
    meta = {
        **embedder.metadata(),
        "space": "teacher" if embedder.kind == "student" else "model",
        "poolings": list(settings.poolings),
        "store_dtype": store_dtype,
        "max_length": settings.max_length,
        "overlength": overlength,
        "alphabet": alphabet,
        "input": source,
        "input_sha256": identity["input_sha256"],
        "n_records": plan.n_records,
        "n_rows": len(plan.rows),
        "n_unique": n_unique,
        "n_truncated": sum(r.truncated for r in plan.rows),
        "dropped": plan.dropped,
        "rejected": [{k: v for k, v in d.items() if k != "detail"} for d in plan.rejected],
        "protkit_version": protkit.__version__,
        **({"shard": list(settings.shard)} if settings.shard else {}),
        **(metadata or {}),
    }
    if per_residue is not None:
        _merge([directory / _part_names(k)[1] for k in range(len(parts))], {**meta, "per_residue": True}, per_residue)
    _merge(part_files, meta, out_parquet)
    shutil.rmtree(directory)
    log.info("wrote %s: %d rows (%d unique sequences, %d truncated, %d dropped, %d rejected)", out_parquet,
             len(plan.rows), n_unique, meta["n_truncated"], len(plan.dropped), len(plan.rejected))
    return Path(out_parquet)


def read_metadata(path: str | Path) -> dict:
    """The ``protkit`` metadata of an embeddings parquet file."""
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise EmbedError(f"{path}: not a protkit embeddings file (no '{METADATA_KEY.decode()}' metadata)")
    return json.loads(raw)


# --- shards ----------------------------------------------------------------------------------
def shard_path(out_dir: str | Path, index: int, count: int) -> Path:
    return Path(out_dir) / f"shard-{index}-of-{count}.parquet"


def embed_shard(
    embedder: Embedder, fasta: str | Path, out_dir: str | Path, index: int, count: int, **options
) -> Path:
    """Embed shard ``index`` of ``count`` into ``out_dir/shard-{index}-of-{count}.parquet``."""
    return embed_fasta(embedder, fasta, shard_path(out_dir, index, count), shard=(index, count), **options)


_SHARED_KEYS = (
    "model_fingerprint", "quantization", "precision", "backend", "poolings", "dim", "store_dtype", "max_length",
    "overlength", "alphabet", "input", "input_sha256",
)


def gather_shards(shard_paths: Sequence[str | Path], out_parquet: str | Path) -> Path:
    """Concatenate a complete set of shard files in FASTA order into ``out_parquet`` (atomically)."""
    if not shard_paths:
        raise EmbedError("gather_shards: no shard files given")
    tables = [pq.read_table(p) for p in shard_paths]
    metas = [read_metadata(p) for p in shard_paths]
    first = metas[0]
    for path, meta in zip(shard_paths, metas):
        if "shard" not in meta:
            raise EmbedError(f"{path}: not a shard file (no shard in its metadata)")
        differ = [k for k in _SHARED_KEYS if meta.get(k) != first.get(k)]
        if differ:
            raise EmbedError(
                f"{path} differs from {shard_paths[0]} in {', '.join(differ)}; re-run the embedding shards"
            )
    count = first["shard"][1]
    found = sorted(m["shard"][0] for m in metas)
    if found != list(range(count)) or any(m["shard"][1] != count for m in metas):
        raise EmbedError(f"gather_shards: expected shards 0..{count - 1} of {count} once each, got {found}")
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [("index", "ascending")])).drop_columns(["index"])
    meta = {k: v for k, v in first.items() if k != "shard"}
    for key in ("n_records", "n_rows", "n_unique", "n_truncated"):
        meta[key] = sum(m[key] for m in metas)
    for key in ("dropped", "rejected"):
        meta[key] = sorted((d for m in metas for d in m.get(key, [])), key=lambda d: d["line"])
    meta["shards"] = count
    write_parquet(table, meta, out_parquet)
    return Path(out_parquet)
