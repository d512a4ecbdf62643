"""Baselines podsep is compared with: the naive whole-file use of a separator.

``full_file_tracks`` runs the separator over the *whole* recording in chunks
(what one gets by feeding a podcast to SepFormer directly), stitches the chunks
with linear crossfades and matches sources to speakers. It exists so that
``podsep eval`` and ``podsep bench`` can show what separating only around
overlaps buys, in quality and in time.

Matching needs to know who is active; the baseline is given a diarization (in
the evaluation, the reference turns) and, per chunk, picks the assignment of
sources to speakers that best agrees with (a) each speaker's activity and (b)
the audio already placed in the previous chunk's overlap (continuity). Each
chunk's sources are rescaled by least squares so that they add up to the
mixture, since separators return sources at arbitrary scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..diarization import Diarization

ProgressHook = Callable[..., Any]
_FRAME_SECONDS = 0.05  # envelope resolution used for matching


def chunk_bounds(num_samples: int, sample_rate: int, chunk: float, overlap: float) -> list[tuple[int, int]]:
    """Sample ranges of ``chunk``-second pieces that share ``overlap`` seconds with their neighbours.

    The last chunk is moved back so that it is as long as the others (a short last
    piece would give the separator too little context), unless the file is shorter.
    """
    size = max(1, int(round(chunk * sample_rate)))
    shared = int(round(overlap * sample_rate))
    if shared >= size:
        raise ValueError("chunk overlap must be shorter than the chunk")
    if num_samples <= size:
        return [(0, num_samples)]
    bounds = []
    start = 0
    while True:
        end = start + size
        if end >= num_samples:
            bounds.append((max(0, num_samples - size), num_samples))
            break
        bounds.append((start, end))
        start = end - shared
    return bounds


def _envelope(signal: np.ndarray, frame: int) -> np.ndarray:
    count = max(1, len(signal) // frame)
    trimmed = signal[: count * frame].astype(np.float64)
    if trimmed.size < frame:
        trimmed = np.pad(trimmed, (0, frame - trimmed.size))
    return np.sqrt((trimmed.reshape(count, -1) ** 2).mean(axis=1))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / denominator if denominator > 0 else 0.0


def _fit_to_mixture(sources: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Least-squares gains so that the sources add up to the mixture (restores level and sign)."""
    matrix = sources.T.astype(np.float64)
    if not np.any(matrix):
        return sources
    gains, *_ = np.linalg.lstsq(matrix, mixture.astype(np.float64), rcond=None)
    return (sources * gains[:, None]).astype(np.float32)


def full_file_tracks(
    mixture: np.ndarray,
    sample_rate: int,
    separator: Any,
    diarization: Diarization,
    speakers: Sequence[str] | None = None,
    *,
    chunk: float = 30.0,
    overlap: float = 2.0,
    continuity_weight: float = 1.0,
    hook: ProgressHook | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Separate the whole of ``mixture`` (mono) chunk by chunk; return per-speaker tracks and timings.

    ``separator`` follows :class:`podsep.models.separation.Separator`. Speakers without
    a source in a chunk (more speakers talk than the model has outputs) get
    silence there. Returns ``(tracks, {"separation": s, "matching": s})``, tracks
    mono float32 as long as ``mixture``.
    """
    from scipy.optimize import linear_sum_assignment

    mixture = np.asarray(mixture, dtype=np.float32)
    if mixture.ndim != 1:
        raise ValueError("full_file_tracks needs a mono mixture")
    speakers = list(diarization.speakers if speakers is None else speakers)
    length = len(mixture)
    bounds = chunk_bounds(length, sample_rate, chunk, overlap)
    activity = diarization.activity(sample_rate, length, speakers)
    frame = max(1, int(round(_FRAME_SECONDS * sample_rate)))
    tracks = np.zeros((len(speakers), length), dtype=np.float32)
    timings = {"separation": 0.0, "matching": 0.0}
    previous: tuple[int, int] | None = None
    for index, (start, end) in enumerate(bounds):
        began = time.perf_counter()
        sources = np.asarray(separator(mixture[start:end], sample_rate), dtype=np.float32)[:, : end - start]
        if sources.shape[1] < end - start:
            sources = np.pad(sources, ((0, 0), (0, end - start - sources.shape[1])))
        timings["separation"] += time.perf_counter() - began
        began = time.perf_counter()
        sources = _fit_to_mixture(sources, mixture[start:end])
        score = np.zeros((len(sources), len(speakers)))
        envelopes = [_envelope(s, frame) for s in sources]
        for k in range(len(speakers)):
            # +1 where speaker k talks, -1 where not: a source scores the share of its energy
            # inside k's turns minus the share outside (works even when k talks throughout).
            sign = 2.0 * _envelope(activity[k, start:end].astype(np.float32), frame) - 1.0
            for s, envelope in enumerate(envelopes):
                energy = envelope ** 2
                total = float(energy.sum())
                score[s, k] = float(np.dot(energy, sign[: len(energy)])) / total if total > 0 else 0.0
        shared = (max(start, previous[0]), min(end, previous[1])) if previous else None
        if shared and shared[1] > shared[0] and continuity_weight > 0:
            for k in range(len(speakers)):
                placed = tracks[k, shared[0]:shared[1]]
                for s in range(len(sources)):
                    score[s, k] += continuity_weight * _correlation(sources[s, shared[0] - start:shared[1] - start], placed)
        rows, columns = linear_sum_assignment(-score)
        weight = np.ones(end - start, dtype=np.float32)
        if shared and shared[1] > shared[0]:
            ramp = np.linspace(0.0, 1.0, shared[1] - shared[0], endpoint=False, dtype=np.float32)
            weight[: shared[1] - shared[0]] = ramp
            # Fade the earlier chunk out over the same samples: the weights add up to one.
            tracks[:, shared[0]:shared[1]] *= 1.0 - ramp
        for s, k in zip(rows, columns):
            tracks[k, start:end] += weight * sources[s]
        previous = (start, end)
        timings["matching"] += time.perf_counter() - began
        if hook:
            hook("separation", None, completed=index + 1, total=len(bounds))
    return {speaker: tracks[row] for row, speaker in enumerate(speakers)}, {
        key: round(value, 4) for key, value in timings.items()
    }
