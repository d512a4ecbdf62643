"""The ``podsep`` command line: ``split`` and ``batch`` here, ``models`` beside them, ``eval`` and ``bench`` from the lab."""

from .main import main

__all__ = ["main"]
