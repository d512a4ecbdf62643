"""podsep: one clean, full-length track per speaker."""

__version__ = "0.1.0"
