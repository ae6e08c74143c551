"""protkit's version: the one home of the number that outputs record (``protkit_version``),
``protkit --version`` prints and ``pyproject.toml`` reads (``[tool.setuptools.dynamic]``)."""

VERSION = "0.1.0"
