"""protkit: distil ESMC into ProtHash, quantize it to int8, and embed FASTA files.

Python interface (:mod:`protkit.api`): :func:`load` a model, then ``.embed(sequences)`` (numpy) or
``.embed_table(sequences)`` (pandas); :class:`EmbeddingModel`, :class:`SequenceError`. The names are
imported when first used, so that ``import protkit`` does not load torch.
"""

from __future__ import annotations

from typing import Any

from protkit.version import VERSION as __version__

__all__ = ["EmbeddingModel", "SequenceError", "__version__", "load"]
API_NAMES = ("EmbeddingModel", "SequenceError", "load")


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from protkit import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
