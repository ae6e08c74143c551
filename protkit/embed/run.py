"""Embedding FASTA files with a student or the teacher; shared by the CLI and the rules.

Output parquet (one row per kept FASTA record, in FASTA order):

- ``id`` (string), ``description`` (string: the header's text after the id, null where there is
  none; only when some record has one), ``length`` (int32, residues of the input sequence),
  ``truncated`` (bool: only the first ``max_length - 2`` residues were embedded; more than 1% of the
  rows truncated is a logged warning);
- one column per pooling (``mean``, ``cls``, ``max``, ``std``, ``var``, ``median``, ``norm``:
  :mod:`protkit.sequences.pooling`): fixed-size list of ``dim`` float32 or float16 (students: their
  vectors in the teacher's width, ``ProtHash.embed_teacher``); with ``concatenate``, one column
  instead, named by the poolings joined with ``+`` (``mean+std``), their vectors side by side in
  the order given (``dim`` is then the poolings times the model's width);
- key-value metadata under ``protkit`` (JSON, :func:`protkit.io.metadata.read_protkit_metadata`): model
  (as given, and ``model_path``: its absolute path when local), kind, model fingerprint (sha256 of
  the weights file), precision, backend, int8 method, poolings (the vector columns), dim,
  max_length, overlength and alphabet policies, dropped and rejected records, protkit version.

Records: sequences are upper-cased and a terminal ``*`` removed; letters outside the amino-acid
alphabet (:mod:`protkit.sequences.alphabet`) skip the record (``alphabet="reject"``, listed in the metadata
and the log) or stop the run (``"error"``); a file whose letters are nearly all A/C/G/T/U/N is
refused as DNA/RNA. Per-residue vectors (``per_residue=FILE``) follow :mod:`protkit.embed.residues`.

Work is done in parts of about ``chunk_residues`` residues (consecutive records; identical
sequences in a part are embedded once). Finished parts are kept in ``OUTPUT.partial/`` with the
run's fingerprint, so a killed run re-started with the same arguments resumes there and gives the
same file as an uninterrupted run; other arguments are refused, naming what differs. The outputs
are written atomically once every part is done, then the parts are removed.

Shards (``shard=(index, count)``) take the records whose 0-based position ``i`` has
``i % count == index``; shard files carry an ``index`` column that
:func:`protkit.embed.shards.gather_shards` uses to restore FASTA order and then drops.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Sequence

from protkit.embed.embedder import Embedder, residue_bar
from protkit.embed.loading import default_max_tokens
from protkit.embed.parts import (
    embed_part, keep_or_remove, merge_parts, open_work_dir, part_done, part_key, part_names, run_fingerprint, work_dir,
)  # fmt: skip
from protkit.embed.plan import Plan, group_parts, plan_records, shard_records
from protkit.embed.settings import (
    POOLED_CHUNK_RESIDUES, RESIDUE_CHUNK_RESIDUES, EmbedSettings, check_settings, run_identity,
)  # fmt: skip
from protkit.io.columns import STORE_DTYPES
from protkit.io.digests import file_sha256
from protkit.io.metadata import read_protkit_metadata
from protkit.io.outputs import OutputError, claim_outputs
from protkit.io.paths import local_model_path
from protkit.sequences.pooling import CONCATENATION, pooling_parts
from protkit.sequences.tokenize import embedded_residues
from protkit.version import VERSION

log = logging.getLogger(__name__)


def embed_fasta(
    embedder: Embedder,
    fasta: str | Path,
    out_parquet: str | Path,
    *,
    poolings: Sequence[str] = ("mean",),
    concatenate: bool = False,
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

    ``max_tokens``: padded tokens per batch (default: :func:`~protkit.embed.loading.default_max_tokens`,
    the fastest measured for the device). ``max_length``: tokens incl. CLS/EOS (default: the model's
    context length). ``overlength``: ``truncate`` (keep the N-terminal residues), ``drop`` (leave
    out, listed in the metadata) or ``error``. ``alphabet``: ``reject`` or ``error``.
    ``resume=False`` discards an unfinished run. ``metadata``: extra entries for the ``protkit`` metadata.
    ``concatenate``: one column of the poolings' vectors side by side; a single concatenated name
    (``poolings=["mean+std"]``, as a file's metadata lists it) means the same.
    """
    if len(poolings) == 1 and CONCATENATION in poolings[0]:
        poolings, concatenate = pooling_parts(poolings[0]), True
    settings = EmbedSettings(
        poolings=tuple(poolings), concatenate=concatenate, max_tokens=max_tokens or default_max_tokens(embedder),
        max_length=max_length or embedder.context_length, overlength=overlength, alphabet=alphabet,
        store_dtype=store_dtype, per_residue=per_residue is not None,
        chunk_residues=chunk_residues or (RESIDUE_CHUNK_RESIDUES if per_residue else POOLED_CHUNK_RESIDUES),
        shard=tuple(shard) if shard else None,
    )
    check_settings(embedder, settings)
    source = str(fasta)
    with claim_outputs([out_parquet, per_residue], [work_dir(out_parquet)], inputs=[fasta, *model_files(embedder)]):
        records = shard_records(fasta, *(settings.shard or (0, 1)))
        plan = plan_records(records, source, settings.max_length, overlength, alphabet, sharded=shard is not None)
        identity = run_identity(embedder, settings, file_sha256(fasta))
        directory = work_dir(out_parquet)
        open_work_dir(directory, identity, resume)
        parts = group_parts(plan.rows, settings.chunk_residues)
        try:
            _embed_parts(embedder, parts, settings, directory, run_fingerprint(identity), Path(source).name,
                         plan.described)
            run_meta = _run_metadata(embedder, plan, settings, identity, source, directory, len(parts))
            meta = {**embedder.metadata(), **run_meta, **(metadata or {})}
            if per_residue is not None:
                merge_parts([directory / part_names(k)[1] for k in range(len(parts))],
                            {**meta, "dim": embedder.dim, "per_residue": True}, per_residue)
            merge_parts([directory / part_names(k)[0] for k in range(len(parts))], meta, out_parquet)
        except OutputError as err:
            raise keep_or_remove(directory, err, _output_bytes(plan, settings, embedder.dim)) from None
        shutil.rmtree(directory)
    log.info("wrote %s: %d rows (%d unique sequences, %d truncated, %d dropped, %d rejected)", out_parquet,
             len(plan.rows), meta["n_unique"], meta["n_truncated"], len(plan.dropped), len(plan.rejected))
    return Path(out_parquet)


def _output_bytes(plan: Plan, settings: EmbedSettings, dim: int) -> int:
    """About how many bytes a run writes, twice (its parts, then the merged files): vectors only."""
    width = STORE_DTYPES[settings.store_dtype][1]().itemsize * dim
    residues = sum(embedded_residues(len(r.sequence), settings.max_length) for r in plan.rows) if settings.per_residue \
        else 0
    return 2 * width * (len(plan.rows) * len(settings.poolings) + residues)


def model_files(embedder: Embedder) -> list[Path]:
    """The files or directory the model was read from (inputs an output must not overwrite)."""
    named = (embedder.source, embedder.config.get("weights"), embedder.extra.get("onnx_file"))
    return [Path(p) for p in named if p and Path(p).exists()]


def _embed_parts(embedder: Embedder, parts: list, settings: EmbedSettings, directory: Path, run: str,
                 name: str, descriptions: bool) -> None:
    """Embed every part not finished yet in ``directory`` (``run``: the run's fingerprint), with a
    residues progress bar; ``descriptions``: parts with a ``description`` column."""
    keys = [part_key(rows, run) for rows in parts]
    done = [part_done(directory, k, key, settings.per_residue) for k, key in enumerate(keys)]
    residues = [[embedded_residues(len(r.sequence), settings.max_length) for r in rows] for rows in parts]
    reused = sum(sum(counts) for k, counts in enumerate(residues) if done[k])
    with residue_bar(sum(map(sum, residues)), f"embed {name}", initial=reused) as bar:
        for k, rows in enumerate(parts):
            if not done[k]:
                embed_part(embedder, rows, settings, directory, k, keys[k], bar.update, descriptions)


def _run_metadata(embedder: Embedder, plan: Plan, settings: EmbedSettings, identity: dict, source: str,
                  directory: Path, n_parts: int) -> dict:
    """The output's ``protkit`` metadata beyond the model's: settings, vector columns and their width,
    input, counts, left-out records."""
    n_unique = sum(read_protkit_metadata(directory / part_names(k)[0])["n_unique"] for k in range(n_parts))
    return {
        "model_path": local_model_path(embedder.source),
        "space": "teacher" if embedder.kind == "student" else "model",
        "poolings": list(settings.columns),
        "concatenate": settings.concatenate,
        "dim": embedder.dim * (len(settings.poolings) if settings.concatenate else 1),
        "store_dtype": settings.store_dtype,
        "max_length": settings.max_length,
        "overlength": settings.overlength,
        "alphabet": settings.alphabet,
        "input": source,
        "input_sha256": identity["input_sha256"],
        "n_records": plan.n_records,
        "n_rows": len(plan.rows),
        "n_unique": n_unique,
        "n_truncated": sum(r.truncated for r in plan.rows),
        "dropped": plan.dropped,
        "rejected": [{k: v for k, v in d.items() if k != "detail"} for d in plan.rejected],
        "protkit_version": VERSION,
        **({"shard": list(settings.shard)} if settings.shard else {}),
    }
