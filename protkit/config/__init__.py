"""The workflow configuration: the schema (``schema.yaml``), its validation and the checks across keys,
with errors that name the key."""

from protkit.config.checks import INT8_SUFFIX, is_int8, variant_of
from protkit.config.validate import ConfigError, load, load_schema, schema_path, validate

__all__ = ["ConfigError", "INT8_SUFFIX", "is_int8", "load", "load_schema", "schema_path", "validate", "variant_of"]
