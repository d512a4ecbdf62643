"""User-facing errors.

Everything that a user can cause (a bad path, an unreadable file, a model that
cannot be loaded) is raised as :class:`PodsepError` with a message that fits on
one line and says what to do. The CLI prints that line and exits non-zero; it
never shows a traceback for these.
"""

from __future__ import annotations


class PodsepError(Exception):
    """An error caused by input, settings or environment, explained in one line."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class InputError(PodsepError):
    """The input audio is missing, unreadable, empty or otherwise unusable."""


class ModelError(PodsepError):
    """A model could not be loaded (missing, gated, offline, corrupt)."""


class OutputError(PodsepError):
    """The output location cannot be written or would be overwritten."""
