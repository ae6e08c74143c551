"""The embed stage (``workflow/rules/embed.smk``) and ``protkit embed``: FASTA files through a student
or the teacher into pooled (and per-residue) vectors, resumable, in shards when asked."""

from protkit.embed.embedder import Embedder, EmbedError, pooled_embeddings
from protkit.embed.loading import load_embedder
from protkit.embed.residues import read_residues
from protkit.embed.run import embed_fasta
from protkit.embed.shards import embed_shard, gather_shards

__all__ = [
    "EmbedError", "Embedder", "embed_fasta", "embed_shard", "gather_shards", "load_embedder", "pooled_embeddings",
    "read_residues",
]  # fmt: skip
