"""protkit from Python: load a model once, embed sequences into numpy arrays or a pandas table.

    >>> import protkit
    >>> model = protkit.load("results/models/V2-384-Tiny")    # any --model of protkit embed
    >>> vectors = model.embed(["MKTAYIAKQRQISFVKSHFSRQ", "MSEQNNTEMTFQIQRIYTKDI"])
    >>> vectors.shape == (2, model.dim), vectors.dtype
    (True, dtype('float32'))
    >>> both = model.embed({"P1": "MKTAYIAKQRQ", "P2": "mseqnntemt*"}, pooling=["mean", "cls"])
    >>> sorted(both), both["cls"].shape == (2, model.dim)
    (['cls', 'mean'], True)

Every call runs ``protkit embed``'s own code: the sequences are checked and cleaned as its FASTA
records are (:mod:`protkit.sequences.alphabet`: upper-cased, a final ``*`` dropped), written to a
temporary FASTA file and embedded by :func:`protkit.embed.run.embed_fasta` with the
:class:`~protkit.embed.embedder.Embedder` that :func:`protkit.embed.loading.load_embedder` gives for
the same options and poolings. So the backend and precision choice (on a CPU the path measured fastest
on its capability class, torch on GPUs), the batching (padded tokens per batch, length-sorted, identical sequences once), the
poolings and the over-length rule are the command's, and the vectors equal the parquet file it
writes for the same sequences.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np
import pyarrow.parquet as pq

from protkit.embed.embedder import Embedder, EmbedError
from protkit.embed.loading import load_embedder
from protkit.embed.run import embed_fasta
from protkit.io.columns import column_vectors
from protkit.sequences.alphabet import ALPHABET_POLICIES, NucleotideCounter, check_alphabet, clean_sequence
from protkit.sequences.fasta import write_fasta
from protkit.sequences.pooling import CONCATENATION, EMBED_POOLINGS, pooling_parts
from protkit.sequences.tokenize import token_count

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["EmbeddingModel", "SequenceError", "load"]

Sequences = Union[Sequence[str], Mapping[Any, str], str, Path]  # sequences, {id: sequence} or a FASTA path
Pooling = Union[str, Sequence[str]]
SEQUENCES_FASTA = "sequences.fasta"  # the temporary FASTA file (the progress bar names it)


class SequenceError(EmbedError):
    """A sequence given to :meth:`EmbeddingModel.embed` that ``protkit embed`` would not embed; the
    message names its position and id."""


class EmbeddingModel:
    """A model loaded for embedding (:func:`load`); :meth:`embed` and :meth:`embed_table`."""

    def __init__(self, model: str | Path, *, int8: bool = False, backend: str = "auto", device: str = "auto",
                 precision: str = "auto", max_tokens: int | None = None) -> None:
        self.source = str(model)
        self.options = {"int8": int8, "precision": precision, "backend": backend, "device": device}
        self.max_tokens = max_tokens
        self.loaded: dict[frozenset[str], Embedder] = {}
        self.embedder = self.embedder_for(["mean"])  # loaded now: a bad model fails here, not at embed()

    def __repr__(self) -> str:
        return f"EmbeddingModel({self.source!r}, backend={self.embedder.backend!r}, dim={self.dim})"

    @property
    def dim(self) -> int:
        """Width of one pooling's vector (a student's: its teacher's width)."""
        return self.embedder.dim

    @property
    def context_length(self) -> int:
        """Tokens the model reads, CLS and EOS included; longer sequences are truncated by default."""
        return self.embedder.context_length

    @property
    def metadata(self) -> dict:
        """What ``protkit embed`` records about the model: source, kind, fingerprint, backend, int8, ..."""
        return self.embedder.metadata()

    def embedder_for(self, poolings: Sequence[str]) -> Embedder:
        """The :class:`Embedder` ``protkit embed --pooling ...`` loads for ``poolings``: its backend and,
        for onnxruntime, the graph's outputs depend on them. A torch model gives every pooling, so a
        teacher or a student asked for ``backend="torch"`` is loaded once."""
        key = frozenset(part for name in poolings for part in pooling_parts(name))
        if key not in self.loaded:
            any_pooling = [e for e in self.loaded.values()
                           if e.backend == "torch" and (e.kind == "teacher" or self.options["backend"] == "torch")]
            self.loaded[key] = any_pooling[0] if any_pooling else load_embedder(
                self.source, per_residue=False, poolings=sorted(key), **self.options)
        return self.loaded[key]

    def embed(self, sequences: Sequences, pooling: Pooling = "mean", *, batch_tokens: int | None = None,
              max_length: int | None = None, overlength: str = "truncate",
              alphabet: str = "error") -> np.ndarray | dict[str, np.ndarray]:
        """Vectors of ``sequences`` in input order: ``(N, dim)`` float32 for one pooling name, a dict
        ``{pooling: (N, dim)}`` for a list of names (``"mean+std"``, alone: one ``(N, 2 * dim)`` array).

        ``sequences``: a list or tuple of sequences, a dict ``{id: sequence}``, or a FASTA file path
        (``.gz`` ok). ``batch_tokens``: padded tokens per batch (default: :func:`load`'s ``max_tokens``,
        else ``protkit embed``'s). ``max_length``: tokens kept, CLS/EOS included (default the model's
        context). ``overlength``: ``truncate`` (the first residues; flagged in :meth:`embed_table`),
        ``drop`` or ``error``. ``alphabet``: ``error`` raises :class:`SequenceError` naming the first
        sequence with a letter that is not an amino acid (or that reads as DNA/RNA); ``reject`` leaves
        such sequences out. Left-out sequences have no row: :meth:`embed_table` gives the ids.
        """
        table = self.embed_rows(sequences, pooling, batch_tokens, max_length, overlength, alphabet)
        vectors = {name: table[name] for name in pooling_names(pooling)}
        return vectors[pooling] if isinstance(pooling, str) else vectors

    def embed_table(self, sequences: Sequences, pooling: Pooling = "mean", *, batch_tokens: int | None = None,
                    max_length: int | None = None, overlength: str = "truncate",
                    alphabet: str = "error") -> pd.DataFrame:
        """:meth:`embed` as a pandas DataFrame: ``id`` (the dict's keys, FASTA ids, or positions in a
        list), ``length`` (residues), ``truncated`` and one column per pooling (a ``(dim,)`` float32
        array per row), like the parquet file of ``protkit embed``."""
        import pandas as pd

        table = self.embed_rows(sequences, pooling, batch_tokens, max_length, overlength, alphabet)
        return pd.DataFrame({key: list(value) if key in pooling_names(pooling) else value
                             for key, value in table.items()})

    def embed_rows(self, sequences: Sequences, pooling: Pooling, batch_tokens: int | None, max_length: int | None,
                   overlength: str, alphabet: str) -> dict[str, Any]:
        """``{"id": [...], "length": (N,) int, "truncated": (N,) bool, pooling: (N, D) float32, ...}``."""
        names = pooling_names(pooling)
        embedder = self.embedder_for(names)
        options = {"poolings": names, "max_tokens": self.max_tokens if batch_tokens is None else batch_tokens,
                   "max_length": max_length, "overlength": overlength, "alphabet": alphabet}
        with tempfile.TemporaryDirectory(prefix="protkit-embed-") as tmp:
            out = Path(tmp) / "embeddings.parquet"
            if isinstance(sequences, (str, Path)):
                embed_fasta(embedder, fasta_path(sequences), out, **options)
                return read_rows(out, names, ids=None)
            ids, cleaned = checked_sequences(sequences, alphabet, overlength, max_length or embedder.context_length)
            if not ids:
                return empty_rows(names, embedder.dim)
            fasta = Path(tmp) / SEQUENCES_FASTA
            write_fasta([(str(k), s) for k, s in enumerate(cleaned)], fasta)  # ids: positions in ``cleaned``
            embed_fasta(embedder, fasta, out, **{**options, "alphabet": "error"})  # checked above
            return read_rows(out, names, ids)


def load(model: str | Path, *, int8: bool = False, backend: str = "auto", device: str = "auto",
         precision: str = "auto", max_tokens: int | None = None) -> EmbeddingModel:
    """Load ``model`` for embedding, as ``protkit embed --model`` does: a student directory (protkit's
    or the ``prothash`` package's), a Hub id (``andrewdalpino/ProtHash-V2-384-Tiny``), an ``.onnx``
    file, or the teacher (``esmc_300m``, ``esmc_600m``, a weights file).

    ``int8``: onnxruntime's int8 on a CPU, the ``int8/`` artifact with ``backend="torch"`` or on a GPU.
    ``backend``: ``auto`` (on a CPU the student path measured fastest on its capability class, torch
    otherwise), ``torch`` or ``onnxruntime``. ``device``: ``auto``, ``cpu``, ``cuda[:N]``. ``precision``:
    ``auto`` (bf16 on CPUs with bf16 units and for the teacher on GPUs, fp32 elsewhere), ``fp32``, ``bf16``,
    ``fp16`` (torch). ``max_tokens``: padded tokens per batch (default: the measured best for the device).
    A missing model raises FileNotFoundError, an unusable one a ``ValueError`` naming the file (as the command).
    """
    return EmbeddingModel(model, int8=int8, backend=backend, device=device, precision=precision,
                          max_tokens=max_tokens)


def pooling_names(pooling: Pooling) -> list[str]:
    """``"mean"`` -> ``["mean"]``; a list or tuple of names as it is."""
    names = [pooling] if isinstance(pooling, str) else list(pooling)
    if not names or not all(isinstance(name, str) and set(pooling_parts(name)) <= set(EMBED_POOLINGS)
                            for name in names):
        raise EmbedError(f"pooling must be one of {', '.join(EMBED_POOLINGS)} (or a list of them), got {pooling!r}")
    if len(names) > 1 and any(CONCATENATION in name for name in names):
        raise EmbedError(f"a concatenated pooling ({CONCATENATION}) comes alone, as protkit embed's one column; "
                         f"got {names}")
    return names


def fasta_path(path: str | Path) -> Path:
    """A FASTA file given to :meth:`EmbeddingModel.embed` (a string is a path, not a sequence)."""
    if not Path(path).is_file():
        raise EmbedError(f"{str(path)[:60]!r} is not a FASTA file; to embed one sequence pass a list: "
                         f"model.embed([sequence])")
    return Path(path)


def checked_sequences(sequences: Sequence[str] | Mapping[Any, str], alphabet: str, overlength: str,
                      max_length: int) -> tuple[list, list[str]]:
    """``(ids, cleaned sequences)`` of the sequences ``protkit embed`` would embed, with its rules
    (:func:`protkit.embed.plan.plan_records`): SequenceError naming the first bad one, or (``reject``)
    leave it out with a warning; ``overlength="error"``: SequenceError for the first over-long one."""
    if alphabet not in ALPHABET_POLICIES:
        raise EmbedError(f"alphabet must be one of {', '.join(ALPHABET_POLICIES)}, got {alphabet!r}")
    if isinstance(sequences, Mapping):
        items = list(sequences.items())
    elif isinstance(sequences, (list, tuple)):
        items = list(enumerate(sequences))
    else:
        raise EmbedError(f"sequences must be a list or tuple of strings, a dict {{id: sequence}} or a FASTA path, "
                         f"got {type(sequences).__name__}")
    ids, cleaned, rejected = [], [], []
    nucleotides = NucleotideCounter()
    for position, (key, sequence) in enumerate(items):
        where = f"sequence {position}" + (f" (id {key!r})" if isinstance(sequences, Mapping) else "")
        if not isinstance(sequence, str):
            raise SequenceError(f"{where}: expected a string of amino-acid letters, got {type(sequence).__name__}")
        clean = clean_sequence(sequence)
        if not clean:
            raise SequenceError(f"{where}: empty sequence")
        nucleotides.add(clean)
        problem = check_alphabet(clean)
        if problem is not None:
            if alphabet == "error":
                raise SequenceError(f"{where}: {problem[1]} (alphabet='error'; alphabet='reject' leaves such "
                                    "sequences out)")
            rejected.append(f"{where}: {problem[1]}")
            continue
        if overlength == "error" and 3 <= max_length and token_count(len(clean)) > max_length:
            raise SequenceError(f"{where}: {len(clean)} residues ({token_count(len(clean))} tokens with CLS/EOS) "
                                f"exceed max_length {max_length} tokens; use overlength='truncate' or 'drop'")
        ids.append(key)
        cleaned.append(clean)
    if nucleotides.looks_like_nucleotides():
        raise SequenceError(f"the sequences look like DNA/RNA, not protein ({nucleotides.share:.0%} of the first "
                            f"{nucleotides.residues:,} letters are A/C/G/T/U/N); translate the genes to protein first")
    if rejected:
        log.warning("%d sequence(s) rejected (not amino acids), e.g. %s", len(rejected), "; ".join(rejected[:5]))
        if not ids:
            raise SequenceError(f"no sequence left to embed ({len(rejected)} rejected): {rejected[0]}")
    return ids, cleaned


def read_rows(path: Path, names: Sequence[str], ids: list | None) -> dict[str, Any]:
    """The rows of an embeddings file as arrays; ``ids``: the caller's ids, indexed by the file's ids
    (positions), or None to keep the file's."""
    table = pq.read_table(path)
    file_ids = table.column("id").to_pylist()
    rows: dict[str, Any] = {
        "id": file_ids if ids is None else [ids[int(k)] for k in file_ids],
        "length": table.column("length").to_numpy(),  # (N,)
        "truncated": table.column("truncated").to_numpy(zero_copy_only=False),  # (N,)
    }
    for name in names:
        rows[name] = np.array(column_vectors(table.column(name)), dtype=np.float32)  # (N, D), a writable copy
    return rows


def empty_rows(names: Sequence[str], dim: int) -> dict[str, Any]:
    """:func:`read_rows`'s result for no sequences."""
    widths = {name: dim * len(pooling_parts(name)) for name in names}
    return {"id": [], "length": np.zeros(0, np.int32), "truncated": np.zeros(0, bool),
            **{name: np.zeros((0, widths[name]), np.float32) for name in names}}

