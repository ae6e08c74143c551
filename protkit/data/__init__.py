"""The data stage (``workflow/rules/data.smk``): training proteins read, filtered, de-duplicated and
split by a stable hash of each sequence into ``sequences.parquet``."""

from protkit.data.filter import filter_and_split, filter_split, filter_split_files, split_of
from protkit.data.readers import SOURCES, DataError, RawRecord, download_hub_dataset, read_sources
from protkit.data.table import COLUMNS, SCHEMA, read_dataset, write_dataset

__all__ = [
    "COLUMNS", "SCHEMA", "SOURCES", "DataError", "RawRecord", "download_hub_dataset", "filter_and_split",
    "filter_split", "filter_split_files", "read_dataset", "read_sources", "split_of", "write_dataset",
]  # fmt: skip
