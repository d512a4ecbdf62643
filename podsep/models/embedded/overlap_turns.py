"""Optional overlap step: second-speaker turns inside detected overlapped speech.

The clustering gives one speaker per instant. When an overlapped-speech
detector is installed (``podsep.models.embedded.overlap``, built separately), each
region it reports gets a turn for the *second* speaker: the speaker other than
the one already labelled there whose centroid scores best over the region.
Without the detector, the diarizer returns exclusive turns only; :func:`status`
says which, for the manifest. This module is the whole integration, so it can
be replaced or dropped without touching the rest.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

DETECTOR_MODULE = "podsep.models.embedded.overlap"
_detector: Any = None
_load_error: str | None = None


def available() -> bool:
    """Whether the overlap-detector module is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec(DETECTOR_MODULE) is not None
    except (ImportError, ValueError):
        return False


def status(enabled: bool = True) -> str:
    """One line for the manifest: whether overlaps are added, and why not."""
    if not enabled:
        return "disabled by setting: exclusive turns only"
    if not available():
        return f"none ({DETECTOR_MODULE} not installed): exclusive turns only"
    if _load_error is not None:
        return f"none ({DETECTOR_MODULE} failed to load: {_load_error}): exclusive turns only"
    return f"{DETECTOR_MODULE}: second-speaker turns in detected overlaps"


def _load_detector() -> Any:
    """The detector, loaded once; ``None`` (and a recorded reason) if it cannot load.

    A missing or broken detector must not break diarization, which is still
    useful without overlaps, so any failure degrades to exclusive turns.
    """
    global _detector, _load_error
    if _detector is None and _load_error is None:
        try:
            from .overlap import load_overlap_detector  # type: ignore[import-not-found]

            _detector = load_overlap_detector()
        except Exception as error:  # noqa: BLE001 - degrade, and say why in status()
            _load_error = f"{type(error).__name__}: {error}"[:200]
    return _detector


def second_speaker_turns(
    audio16k: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    step: float,
    speakers: list[str],
    threshold: float | None = None,
) -> tuple[list[tuple[float, float, str]], str]:
    """Extra ``(start, end, speaker)`` turns for overlapped regions, and a status line.

    ``labels``: speaker index per ``step`` seconds (-1 = no speech);
    ``scores``: (steps, speakers) similarity of each step to each speaker.
    Inside a region the labelled (dominant) speaker is kept and also added where
    the VAD had missed speech; the runner-up speaker is added over the region.
    """
    if not available() or len(speakers) == 0 or labels.size == 0:
        return [], status()
    detector = _load_detector()
    if detector is None:
        return [], status()
    regions = detector.regions(audio16k, threshold=threshold)
    extra: list[tuple[float, float, str]] = []
    for start, end in regions:
        a, b = max(0, int(start / step)), min(labels.size, int(np.ceil(end / step)))
        if b <= a:
            continue
        mean = scores[a:b].mean(axis=0)
        inside = labels[a:b][labels[a:b] >= 0]
        dominant = int(np.bincount(inside).argmax()) if inside.size else int(np.argmax(mean))
        extra.append((float(start), float(end), speakers[dominant]))
        if len(speakers) > 1:
            others = np.delete(np.arange(len(speakers)), dominant)
            second = int(others[np.argmax(mean[others])])
            extra.append((float(start), float(end), speakers[second]))
    return extra, status()
