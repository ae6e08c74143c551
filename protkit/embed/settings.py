"""The settings of an embedding run, their checks, and what identifies a run (for resuming)."""

from __future__ import annotations

from dataclasses import dataclass

from protkit.embed.embedder import Embedder, EmbedError
from protkit.io.columns import STORE_DTYPES
from protkit.sequences.alphabet import ALPHABET_POLICIES
from protkit.sequences.pooling import EMBED_POOLINGS, concatenated_name
from protkit.version import VERSION

OVERLENGTH = ("truncate", "drop", "error")
POOLED_CHUNK_RESIDUES = 1 << 18  # residues per resumable part
RESIDUE_CHUNK_RESIDUES = 1 << 16  # smaller parts when per-residue vectors are kept in memory


@dataclass(frozen=True)
class EmbedSettings:
    """What shapes an embedding run's output (with the model and the input file)."""

    poolings: tuple[str, ...]
    concatenate: bool  # one column of the poolings' vectors side by side, named "mean+std"
    max_tokens: int
    max_length: int
    overlength: str
    alphabet: str
    store_dtype: str
    per_residue: bool
    chunk_residues: int
    shard: tuple[int, int] | None

    @property
    def columns(self) -> tuple[str, ...]:
        """The output's vector columns: one per pooling, or the one concatenated column."""
        return (concatenated_name(self.poolings),) if self.concatenate else self.poolings


def check_settings(embedder: Embedder, s: EmbedSettings) -> None:
    """EmbedError naming the option when a setting does not fit the model or is unknown."""
    if not s.poolings or any(p not in EMBED_POOLINGS for p in s.poolings):
        raise EmbedError(
            f"pooling must be one or more of {', '.join(EMBED_POOLINGS)}, got {', '.join(s.poolings) or 'none'}"
        )
    if len(set(s.poolings)) < len(s.poolings):
        raise EmbedError(f"pooling names a pooling twice: {', '.join(s.poolings)}")
    unavailable = [p for p in s.poolings if p not in embedder.poolings]
    if unavailable:
        hint = "; the torch backend gives every pooling" if embedder.backend != "torch" else ""
        raise EmbedError(f"model {embedder.source} gives no {', '.join(unavailable)} pooling; "
                         f"it has {', '.join(embedder.poolings)}{hint}")
    if s.overlength not in OVERLENGTH:
        raise EmbedError(f"overlength must be one of {', '.join(OVERLENGTH)}, got {s.overlength!r}")
    if s.alphabet not in ALPHABET_POLICIES:
        raise EmbedError(f"alphabet must be one of {', '.join(ALPHABET_POLICIES)}, got {s.alphabet!r}")
    if s.store_dtype not in STORE_DTYPES:
        raise EmbedError(f"store_dtype must be one of {', '.join(STORE_DTYPES)}, got {s.store_dtype!r}")
    if not 3 <= s.max_length <= embedder.context_length:
        raise EmbedError(f"max_length must be between 3 and the model's context length "
                         f"{embedder.context_length} tokens, got {s.max_length}")
    if s.max_tokens < 1 or s.chunk_residues < 1:
        raise EmbedError(f"max_tokens and chunk_residues must be positive, got {s.max_tokens}, {s.chunk_residues}")
    if s.per_residue and s.shard is not None:
        raise EmbedError("per-residue output is not sharded: embed the whole file (no shard) with per_residue")


def run_identity(embedder: Embedder, settings: EmbedSettings, input_sha256: str) -> dict:
    """Everything that changes the output: model, settings, input bytes, protkit version."""
    return {
        "model": embedder.source,
        "model_fingerprint": embedder.fingerprint,
        "precision": embedder.precision,
        "quantization": embedder.quantization,
        "backend": embedder.backend,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
        "input_sha256": input_sha256,
        "protkit_version": VERSION,
    }
