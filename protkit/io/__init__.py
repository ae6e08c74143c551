"""Files in and out: atomic writes, digests, protkit's file metadata, data paths, job logs."""

from protkit.io.atomic import atomic_dir, atomic_path, write_json, write_text
from protkit.io.digests import file_sha256, json_sha256
from protkit.io.metadata import METADATA_KEY, FileFormatError, read_protkit_metadata, write_parquet
from protkit.io.paths import DataPathError, resolve_data_path

__all__ = [
    "DataPathError", "FileFormatError", "METADATA_KEY", "atomic_dir", "atomic_path", "file_sha256", "json_sha256",
    "read_protkit_metadata", "resolve_data_path", "write_json", "write_parquet", "write_text",
]  # fmt: skip
