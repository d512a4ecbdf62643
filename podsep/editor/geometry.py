"""Interval arithmetic for drawing: activity per speaker, talk time, and aggregation.

An hour-long episode has thousands of turns, many shorter than a pixel of any
picture; drawing each one makes an unreadable, heavy image. Every drawn output
therefore goes through :func:`simplify`, which joins what the eye cannot
separate at the given resolution and widens what would otherwise vanish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .model import EditorInput

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval], gap: float = 0.0) -> list[Interval]:
    """Sorted union of intervals; pieces separated by at most ``gap`` seconds are joined."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def activity(data: EditorInput) -> dict[str, list[Interval]]:
    """When each speaker talks (their turns merged), in speaker order."""
    spans: dict[str, list[Interval]] = {speaker: [] for speaker in data.speakers}
    for start, end, speaker in data.turns:
        spans.setdefault(speaker, []).append((start, end))
    return {speaker: merge(items) for speaker, items in spans.items()}


def talk_times(data: EditorInput) -> dict[str, float]:
    """Seconds each speaker talks (overlapped speech counts for everyone in it)."""
    return {speaker: sum(b - a for a, b in spans) for speaker, spans in activity(data).items()}


def talk_shares(data: EditorInput) -> dict[str, float]:
    """Each speaker's part of all talk time, in [0, 1] (zeros when nobody talks)."""
    times = talk_times(data)
    total = sum(times.values())
    return {speaker: (t / total if total > 0 else 0.0) for speaker, t in times.items()}


def simplify(intervals: Iterable[Interval], resolution: float) -> list[Interval]:
    """Intervals as they can be drawn at ``resolution`` seconds per pixel.

    Gaps under two pixels are closed and pieces under one pixel are widened to one,
    so the number of drawn shapes is bounded by the picture's width whatever the
    episode's length, and no turn disappears.
    """
    resolution = max(resolution, 0.0)
    widened = [(a, max(b, a + resolution)) for a, b in intervals]
    return merge(widened, gap=2.0 * resolution)


@dataclass(frozen=True)
class OverlapMark:
    """One drawn overlap block: possibly several overlaps too close to draw apart."""

    start: float
    end: float
    handling: str
    confidence: float | None
    count: int


def overlap_marks(data: EditorInput, resolution: float) -> list[OverlapMark]:
    """Overlaps joined the way :func:`simplify` joins turns, keeping what matters.

    Overlaps of the same handling closer than two pixels become one block whose
    confidence is the lowest of its members, so a doubtful overlap is never
    hidden behind a confident neighbour.
    """
    marks: list[OverlapMark] = []
    for entry in sorted(data.overlaps, key=lambda e: (float(e["start"]), float(e["end"]))):
        start, end = float(entry["start"]), float(entry["end"])
        end = max(end, start + resolution)
        handling = str(entry.get("handling"))
        confidence = entry.get("confidence")
        if marks and marks[-1].handling == handling and start <= marks[-1].end + 2.0 * resolution:
            last = marks[-1]
            lowest = [c for c in (last.confidence, confidence) if c is not None]
            marks[-1] = OverlapMark(last.start, max(last.end, end), handling,
                                    min(lowest) if lowest else None, last.count + 1)
        else:
            marks.append(OverlapMark(start, end, handling, confidence, 1))
    return marks


def coverage(intervals: list[Interval], duration: float, bins: int) -> np.ndarray:
    """Fraction of each of ``bins`` equal slices of ``[0, duration]`` covered by disjoint sorted intervals."""
    if bins <= 0 or duration <= 0:
        return np.zeros(max(bins, 0))
    edges = np.linspace(0.0, duration, bins + 1)
    if not intervals:
        return np.zeros(bins)
    starts = np.array([a for a, _ in intervals])
    ends = np.array([b for _, b in intervals])
    lengths = ends - starts
    before = np.concatenate([[0.0], np.cumsum(lengths)])  # talk time before interval k

    def covered_until(t: np.ndarray) -> np.ndarray:
        k = np.searchsorted(starts, t, side="right") - 1
        inside = np.where(k >= 0, np.clip(t - starts[np.maximum(k, 0)], 0.0, lengths[np.maximum(k, 0)]), 0.0)
        return np.where(k >= 0, before[np.maximum(k, 0)] + inside, 0.0)

    cumulative = covered_until(edges)
    return np.clip(np.diff(cumulative) / np.diff(edges), 0.0, 1.0)


def tick_step(duration: float, max_ticks: int = 12) -> float:
    """A round axis step (seconds, minutes, hours) giving at most ``max_ticks`` ticks."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600):
        if duration / step <= max_ticks:
            return float(step)
    return float(np.ceil(duration / max_ticks / 3600.0) * 3600.0)
