"""protkit: distil ESMC into ProtHash, quantize it to int8, and embed FASTA files."""

__version__ = "0.1.0"
