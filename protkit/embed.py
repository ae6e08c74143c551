"""Embedding FASTA files with a ProtHash student (fp32 or int8); shared by the CLI and the rules.

Output parquet (one row per FASTA record, in FASTA order):

- ``id`` (string), ``length`` (int32, residues of the input sequence), ``truncated`` (bool: only
  the first ``max_length - 2`` residues were embedded);
- one column per pooling (``mean``, ``cls``): fixed-size list of ``teacher_dim`` float32 or
  float16 — the student's vectors in the teacher's width (``ProtHash.embed_teacher``);
- key-value metadata under ``protkit`` (JSON, see :func:`read_metadata`): model, model
  fingerprint (sha256 of the weights file), int8 flag and method, poolings, dims, max_length,
  overlength policy, dropped records, protkit version.

Sequences are upper-cased and a terminal ``*`` (stop codon) is removed before embedding.
Identical sequences are embedded once. Shards (``shard=(index, count)``) take the records whose
0-based position ``i`` in the file has ``i % count == index`` (round-robin, so a length-sorted
file still gives shards of similar cost); shard files carry an extra ``index`` column (position
in the FASTA file) that :func:`gather_shards` uses to restore FASTA order and then drops.

Model layout: ``results/models/{variant}/`` holds the fp32 model (``config.json``,
``model.safetensors``) and ``results/models/{variant}/int8/`` the int8 artifact
(:mod:`protkit.quantize`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

import protkit
from protkit.atomic import atomic_path
from protkit.batching import token_budget_batches
from protkit.device import resolve_device
from protkit.fasta import FastaRecord, read_fasta
from protkit.models.esmc_weights import file_sha256
from protkit.models.prothash import ProtHash
from protkit.pooling import pool
from protkit.quantize import QUANT_FILE, load_quantized, quantize_model, read_quantization_info
from protkit.tokenize import encode_one, pad_batch

log = logging.getLogger(__name__)

EMBED_POOLINGS = ("mean", "cls")
OVERLENGTH = ("truncate", "drop", "error")
STORE_TYPES = {"fp32": pa.float32(), "fp16": pa.float16()}
METADATA_KEY = b"protkit"
INT8_SUBDIR = "int8"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class EmbedError(ValueError):
    """A user-facing problem (option, over-long sequence, model, shard set); the message says what to do."""


@dataclass
class LoadedModel:
    """A student ready to embed, with what identifies it in the output metadata."""

    model: ProtHash
    source: str  # directory or Hub id as given
    fingerprint: str  # sha256 of the weights file
    quantization: str | None  # None (fp32), "int8_dynamic" or "int8_weight_only"


# --- model loading ---------------------------------------------------------------------------
def _model_directory(model: str | Path) -> Path:
    """A local directory, or the snapshot of a Hugging Face Hub repo."""
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists() or not _HUB_ID.match(str(model)):
        raise FileNotFoundError(f"model {str(model)!r}: no such directory (expected config.json + model.safetensors)")
    from huggingface_hub import snapshot_download

    try:
        patterns = ["config.json", "model.safetensors", f"{INT8_SUBDIR}/*"]
        return Path(snapshot_download(str(model), allow_patterns=patterns))
    except Exception as err:  # network, auth, missing repo: all user-fixable
        raise FileNotFoundError(
            f"model {str(model)!r}: not a local directory, and fetching it from the Hugging Face Hub failed ({err})"
        ) from err


def load_model(model: str | Path, int8: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a student for embedding.

    ``model``: a ``results/models/{variant}`` directory, an int8 artifact directory (int8 is then
    implied) or a Hub repo id. ``int8``: load ``{model}/int8/``; when that is absent, quantize
    the fp32 model now (``int8_dynamic``; the fingerprint is then the fp32 weights').
    """
    device = resolve_device(device) if isinstance(device, str) else device
    directory = _model_directory(model)
    int8_dir = directory if (directory / QUANT_FILE).is_file() else directory / INT8_SUBDIR
    if (directory / QUANT_FILE).is_file() or (int8 and (int8_dir / QUANT_FILE).is_file()):
        info = read_quantization_info(int8_dir)
        net = load_quantized(int8_dir, device)
        return LoadedModel(net, str(model), file_sha256(int8_dir / info["weights"]), info["method"])
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"model {str(model)!r}: {directory / name} is missing")
    net = ProtHash.from_pretrained(directory)
    fingerprint = file_sha256(directory / "model.safetensors")
    if not int8:
        return LoadedModel(net.to(device), str(model), fingerprint, None)
    log.warning("%s has no %s/ artifact; quantizing the fp32 model now (int8_dynamic)", model, INT8_SUBDIR)
    return LoadedModel(quantize_model(net).to(device), str(model), fingerprint, "int8_dynamic")


# --- batched embedding -----------------------------------------------------------------------
def student_forward(model: ProtHash) -> Forward:
    """``(input_ids, attention_mask) -> hidden states in the teacher's width  # (B, L, teacher_dim)``."""
    return lambda input_ids, attention_mask: model.adapter(model(input_ids, attention_mask))


def pooled_embeddings(
    forward: Forward,
    token_lists: Sequence[Sequence[int]],
    poolings: Sequence[str],
    dim: int,
    max_tokens: int,
    device: torch.device,
    desc: str = "embedding",
) -> dict[str, np.ndarray]:
    """``{pooling: (N, dim) float32}`` in the order of ``token_lists``, computed in length-sorted
    token-budget batches, with a residues/s progress bar."""
    out = {p: np.empty((len(token_lists), dim), dtype=np.float32) for p in poolings}
    residues = sum(len(t) - 2 for t in token_lists)
    with tqdm(total=residues, unit="res", unit_scale=True, desc=desc, disable=None) as bar:
        for rows in token_budget_batches([len(t) for t in token_lists], max_tokens):
            batch = pad_batch([token_lists[i] for i in rows]).to(device)
            with torch.inference_mode():
                hidden = forward(batch.input_ids, batch.attention_mask).float()  # (B, L, dim)
                for p in poolings:
                    out[p][rows] = pool(hidden, batch.input_ids, batch.attention_mask, p).cpu().numpy()
            bar.update(sum(len(token_lists[i]) - 2 for i in rows))
    return out


# --- FASTA -> table --------------------------------------------------------------------------
def prepare_sequence(sequence: str) -> str:
    """Upper-case and drop a terminal stop codon ``*``."""
    return sequence.upper().removesuffix("*")


def shard_records(
    fasta: str | Path | Iterable[FastaRecord], index: int, count: int
) -> list[tuple[int, FastaRecord]]:
    """``(position, record)`` for the records whose 0-based position ``i`` has ``i % count == index``."""
    if count < 1 or not 0 <= index < count:
        raise EmbedError(f"shard index must be in 0..count-1 with count >= 1, got {index} of {count}")
    records = read_fasta(fasta) if isinstance(fasta, (str, Path)) else fasta
    return [(i, r) for i, r in enumerate(records) if i % count == index]


@dataclass
class _Plan:
    positions: list[int]  # FASTA position of each output row
    ids: list[str]
    lengths: list[int]  # residues
    truncated: list[bool]
    unique_of_row: list[int]  # row -> index into unique_tokens
    unique_tokens: list[list[int]]
    dropped: list[dict]


def _plan(records: Sequence[tuple[int, FastaRecord]], source: str, max_length: int, overlength: str) -> _Plan:
    """Apply the over-length policy and find identical sequences."""
    plan = _Plan([], [], [], [], [], [], [])
    unique: dict[str, int] = {}
    for position, record in records:
        sequence = prepare_sequence(record.sequence)
        tokens = encode_one(sequence)
        over = len(tokens) > max_length
        if over and overlength == "error":
            raise EmbedError(
                f"{source} line {record.line}, id {record.id}: {len(sequence)} residues ({len(tokens)} tokens with "
                f"CLS/EOS) exceed max_length {max_length} tokens; use overlength 'truncate' or 'drop', "
                f"or a larger max_length (at most the model's context length)"
            )
        if over and overlength == "drop":
            plan.dropped.append({"id": record.id, "line": record.line, "residues": len(sequence)})
            continue
        if sequence not in unique:
            unique[sequence] = len(plan.unique_tokens)
            plan.unique_tokens.append(encode_one(sequence, max_length) if over else tokens)
        plan.positions.append(position)
        plan.ids.append(record.id)
        plan.lengths.append(len(sequence))
        plan.truncated.append(over)
        plan.unique_of_row.append(unique[sequence])
    return plan


def _vector_column(vectors: np.ndarray, store_dtype: str) -> pa.FixedSizeListArray:
    """(N, D) float32 -> fixed-size-list column of float32/float16."""
    flat = vectors.astype(np.float16 if store_dtype == "fp16" else np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=STORE_TYPES[store_dtype]), vectors.shape[1])


def _check_options(
    model: ProtHash, poolings: Sequence[str], max_length: int, overlength: str, store_dtype: str
) -> None:
    if not poolings or any(p not in EMBED_POOLINGS for p in poolings):
        raise EmbedError(
            f"pooling must be one or more of {', '.join(EMBED_POOLINGS)}, got {', '.join(poolings) or 'none'}"
        )
    if overlength not in OVERLENGTH:
        raise EmbedError(f"overlength must be one of {', '.join(OVERLENGTH)}, got {overlength!r}")
    if store_dtype not in STORE_TYPES:
        raise EmbedError(f"store_dtype must be one of {', '.join(STORE_TYPES)}, got {store_dtype!r}")
    context = model.config.context_length
    if not 3 <= max_length <= context:
        raise EmbedError(
            f"max_length must be between 3 and the model's context length {context} tokens, got {max_length}"
        )


def embed_fasta(
    model: LoadedModel,
    fasta: str | Path | Sequence[FastaRecord],
    out_parquet: str | Path,
    *,
    poolings: Sequence[str] = ("mean",),
    max_tokens: int = 16384,
    max_length: int | None = None,
    overlength: str = "truncate",
    store_dtype: str = "fp32",
    device: str | torch.device = "cpu",
    shard: tuple[int, int] | None = None,
    metadata: dict | None = None,
) -> Path:
    """Embed a FASTA file (or records) into ``out_parquet`` (atomically; see the module docstring).

    ``max_length``: tokens incl. CLS/EOS (default: the model's context length). ``overlength``:
    ``truncate`` (keep the N-terminal residues), ``drop`` (leave out, listed in the metadata) or
    ``error`` (EmbedError naming file, line and id). ``shard``: ``(index, count)``, see
    :func:`shard_records`. ``metadata``: extra entries for the ``protkit`` metadata.
    """
    net = model.model
    poolings = list(poolings)
    max_length = max_length or net.config.context_length
    _check_options(net, poolings, max_length, overlength, store_dtype)
    source = str(fasta) if isinstance(fasta, (str, Path)) else "<records>"
    records = shard_records(fasta, *(shard or (0, 1)))
    plan = _plan(records, source, max_length, overlength)
    if plan.dropped:
        log.warning("%s: %d over-long record(s) dropped (> %d tokens), e.g. %s", source, len(plan.dropped), max_length,
                    ", ".join(d["id"] for d in plan.dropped[:5]))
    device = resolve_device(device) if isinstance(device, str) else device
    net.to(device).eval()
    dim = net.config.teacher_dim
    vectors = pooled_embeddings(student_forward(net), plan.unique_tokens, poolings, dim, max_tokens, device,
                                desc=Path(source).name)
    columns = {
        "id": pa.array(plan.ids, type=pa.string()),
        "length": pa.array(plan.lengths, type=pa.int32()),
        "truncated": pa.array(plan.truncated, type=pa.bool_()),
    }
    rows = np.asarray(plan.unique_of_row, dtype=np.int64)
    for p in poolings:
        columns[p] = _vector_column(vectors[p][rows], store_dtype)
    if shard:
        columns["index"] = pa.array(plan.positions, type=pa.int64())
    meta = {
        "model": model.source,
        "model_fingerprint": model.fingerprint,
        "int8": model.quantization is not None,
        "quantization": model.quantization,
        "model_config": net.config.to_dict(),
        "space": "teacher",
        "dim": dim,
        "poolings": poolings,
        "store_dtype": store_dtype,
        "max_length": max_length,
        "overlength": overlength,
        "input": source,
        "n_records": len(records),
        "n_rows": len(plan.ids),
        "n_unique": len(plan.unique_tokens),
        "n_truncated": sum(plan.truncated),
        "dropped": plan.dropped,
        "protkit_version": protkit.__version__,
        **({"shard": list(shard)} if shard else {}),
        **(metadata or {}),
    }
    _write_table(pa.table(columns), meta, out_parquet)
    log.info("wrote %s: %d rows (%d unique sequences, %d truncated, %d dropped)", out_parquet, len(plan.ids),
             len(plan.unique_tokens), sum(plan.truncated), len(plan.dropped))
    return Path(out_parquet)


def _write_table(table: pa.Table, meta: dict, out_parquet: str | Path) -> None:
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(out_parquet) as tmp:
        pq.write_table(table, tmp)


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
    model: LoadedModel, fasta: str | Path, out_dir: str | Path, index: int, count: int, **options
) -> Path:
    """Embed shard ``index`` of ``count`` into ``out_dir/shard-{index}-of-{count}.parquet``."""
    return embed_fasta(model, fasta, shard_path(out_dir, index, count), shard=(index, count), **options)


_SHARED_KEYS = (
    "model_fingerprint", "quantization", "poolings", "dim", "store_dtype", "max_length", "overlength", "input",
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
    meta["dropped"] = sorted((d for m in metas for d in m["dropped"]), key=lambda d: d["line"])
    meta["shards"] = count
    _write_table(table, meta, out_parquet)
    return Path(out_parquet)
