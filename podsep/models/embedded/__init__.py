"""Embedded diarizer: offline, token-free, weights shipped inside PyPI wheels.

Silero VAD (``silero-vad`` wheel) finds speech, a GE2E speaker encoder
(weights from the ``resemblyzer`` wheel) embeds sliding windows, clustering
assigns speakers and a resegmentation pass cleans the labels. See
:class:`EmbeddedDiarizer`.
"""

from .diarizer import DiarizerSettings, EmbeddedDiarizer

__all__ = ["DiarizerSettings", "EmbeddedDiarizer"]
