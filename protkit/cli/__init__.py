"""The ``protkit`` command line (:func:`main`)."""

from protkit.cli.main import main

__all__ = ["main"]
