"""Protein sequences: FASTA files, the amino-acid alphabet, ESM tokenization, batching and pooling."""

from protkit.sequences.alphabet import ALPHABET_POLICIES, AMINO_ACIDS, check_alphabet, clean_sequence
from protkit.sequences.batching import token_budget_batches
from protkit.sequences.fasta import FastaError, FastaRecord, read_fasta, write_fasta
from protkit.sequences.pooling import POOLINGS, TARGET_POOLINGS, TOKENS, pool
from protkit.sequences.tokenize import TokenBatch, encode_batch, encode_one, max_residues, pad_batch, residue_mask

__all__ = [
    "ALPHABET_POLICIES", "AMINO_ACIDS", "FastaError", "FastaRecord", "POOLINGS", "TARGET_POOLINGS", "TOKENS",
    "TokenBatch", "check_alphabet", "clean_sequence", "encode_batch", "encode_one", "max_residues", "pad_batch",
    "pool", "read_fasta", "residue_mask", "token_budget_batches", "write_fasta",
]  # fmt: skip
