"""Per-speaker tracks at the input's full length, rate and channel count.

Each track is a sequence of *segments*, each drawn from one signal:

* ``original``: the input itself, where the speaker talks alone (bit-exact);
* ``separated``: the speaker's rescaled source from one window, where they
  overlap someone inside that window's core;
* ``silence``: where the speaker does not talk.

Between consecutive segments sits a *joint*, a crossfade placed where it cannot
leak another voice: a switch between the original and a separated source fades
on the solo side (both signals carry the same voice there); a fade from silence
goes into the silent side only where nobody else is talking, otherwise into the
speaker's own segment. The default law is equal power, compensated for how
correlated the two signals are (``w_a² + w_b² + 2ρ·w_a·w_b = 1``): plain
equal-power for unrelated signals, equal-gain for identical ones, so joins
between two renderings of one voice neither dip nor bump.

A plan (segments and joints) is cheap to build from the diarization alone, and
can be rendered for any block of samples, so long files can be written in pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .intervals import Intervals

ORIGINAL = "original"
SEPARATED = "separated"
SILENCE = "silence"


@dataclass(frozen=True)
class Segment:
    """``[start, end)`` in samples, drawn from ``kind`` (and ``window`` when separated)."""

    start: int
    end: int
    kind: str
    window: int = -1

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Joint:
    """A crossfade over ``[start, end)`` from segment ``left`` to segment ``right``."""

    start: int
    end: int
    left: Segment
    right: Segment


@dataclass(frozen=True)
class SeparatedSpan:
    """Where a window's separated source exists (``[start, end)``, samples) and where it is used (core)."""

    window: int
    start: int
    end: int
    core_start: int
    core_end: int


@dataclass
class TrackPlan:
    speaker: str
    segments: list[Segment]
    joints: list[Joint]


def plan_track(
    own: Intervals,
    others: Intervals,
    spans: Sequence[SeparatedSpan],
    assigned_windows: set[int],
    num_samples: int,
    *,
    overlap_policy: str,
    fade: int,
    speaker: str = "",
) -> TrackPlan:
    """Segments and joints for one speaker.

    ``own``: where this speaker talks; ``others``: where anyone else talks;
    ``assigned_windows``: the windows whose separator output gave this speaker a
    source. ``overlap_policy`` decides what an overlap the separator did not
    handle becomes: the mixture (``separate``/``duplicate``) or silence (``mute``).
    """
    used = [span for span in spans if span.window in assigned_windows]
    edges = {0, num_samples}
    for intervals in (own, others):
        edges.update(intervals.starts.tolist())
        edges.update(intervals.ends.tolist())
    for span in used:
        edges.update((span.core_start, span.core_end))
    bounds = np.array(sorted(e for e in edges if 0 <= e <= num_samples), dtype=np.int64)
    starts, ends = bounds[:-1], bounds[1:]
    mine = own.contains(starts)
    overlapped = mine & others.contains(starts)
    kind = np.where(mine, 1, 0).astype(np.int8)  # 0 silence, 1 original, 2 separated
    if overlap_policy == "mute":
        kind[overlapped] = 0
    window_of = np.full(len(starts), -1, dtype=np.int64)
    if used:
        core_starts = np.array([span.core_start for span in used])
        order = np.argsort(core_starts)
        core_starts = core_starts[order]
        core_ends = np.array([span.core_end for span in used])[order]
        index = np.searchsorted(core_starts, starts, side="right") - 1
        # Only where the speaker overlaps someone: solo speech inside a merged region stays the original.
        in_core = (index >= 0) & overlapped
        in_core[in_core] = starts[in_core] < core_ends[index[in_core]]
        kind[in_core] = 2
        window_of[in_core] = np.array([used[i].window for i in order])[index[in_core]]

    segments: list[Segment] = []
    names = {0: SILENCE, 1: ORIGINAL, 2: SEPARATED}
    for a, b, k, w in zip(starts.tolist(), ends.tolist(), kind.tolist(), window_of.tolist()):
        label = names[k]
        if segments and segments[-1].kind == label and segments[-1].window == w:
            segments[-1] = Segment(segments[-1].start, b, label, w)
        else:
            segments.append(Segment(a, b, label, w))
    by_window = {span.window: span for span in spans}
    joints = [
        _place_joint(left, right, others, by_window, fade)
        for left, right in zip(segments, segments[1:])
    ]
    return TrackPlan(speaker, segments, [j for j in joints if j is not None])


def _place_joint(
    left: Segment,
    right: Segment,
    others: Intervals,
    spans: dict[int, SeparatedSpan],
    fade: int,
) -> Joint | None:
    """Where the crossfade between two neighbouring segments goes (see module docstring)."""
    if fade <= 0:
        return None
    boundary = left.start + left.length

    def budget(segment: Segment) -> int:
        # A segment may host a fade at each end: each gets at most half of it.
        return segment.length // 2

    def available(segment: Segment, start: int, end: int) -> bool:
        if segment.kind != SEPARATED:
            return True
        span = spans[segment.window]
        return span.start <= start and end <= span.end

    kinds = (left.kind, right.kind)
    if SILENCE in kinds:
        silent, voiced = (left, right) if left.kind == SILENCE else (right, left)
        length = min(fade, silent.length // 2, budget(voiced))
        outside = (boundary - length, boundary) if silent is left else (boundary, boundary + length)
        quiet = not others.touches(*outside) if voiced.kind == ORIGINAL else True
        if length > 0 and quiet and available(voiced, *outside):
            return Joint(outside[0], outside[1], left, right)
        length = min(fade, budget(voiced))
        inside = (boundary, boundary + length) if voiced is right else (boundary - length, boundary)
        return Joint(inside[0], inside[1], left, right) if length > 0 else None
    if kinds in ((ORIGINAL, SEPARATED), (SEPARATED, ORIGINAL)):
        original = left if left.kind == ORIGINAL else right
        length = min(fade, budget(original))
        region = (boundary - length, boundary) if original is left else (boundary, boundary + length)
        separated = right if original is left else left
        span = spans[separated.window]
        region = (max(region[0], span.start), min(region[1], span.end))
        return Joint(region[0], region[1], left, right) if region[1] > region[0] else None
    # separated -> separated (chunks of one long overlap, or two nearby windows)
    half = min(fade, budget(left), budget(right)) // 2
    start, end = boundary - half, boundary + half
    left_span, right_span = spans[left.window], spans[right.window]
    start = max(start, right_span.start)
    end = min(end, left_span.end)
    return Joint(start, end, left, right) if end > start else None


def fade_weights(length: int, correlation: float, law: str) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in weights over ``length`` samples.

    ``power``: constant power for signals with correlation ``ρ`` (equal-power at
    ρ=0, equal-gain at ρ=1); ``gain``: raised-cosine weights summing to one.
    """
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    theta = 0.5 * np.pi * t
    if law == "gain":
        return np.cos(theta) ** 2, np.sin(theta) ** 2
    rho = float(np.clip(correlation, 0.0, 1.0))
    norm = np.sqrt(1.0 + rho * np.sin(2 * theta))
    return np.cos(theta) / norm, np.sin(theta) / norm


SignalReader = Callable[[Segment, int, int], np.ndarray]


def render(plan: TrackPlan, start: int, end: int, read: SignalReader, channels: int, law: str = "power") -> np.ndarray:
    """Render samples ``[start, end)`` of a planned track.

    ``read(segment, a, b)`` returns ``(channels, b - a)`` of the segment's signal
    (the original audio, or the separated source of its window; never called for
    silence).
    """
    out = np.zeros((channels, end - start), dtype=np.float32)
    for segment in plan.segments:
        a, b = max(segment.start, start), min(segment.end, end)
        if b > a and segment.kind != SILENCE:
            out[:, a - start:b - start] = read(segment, a, b)
    for joint in plan.joints:
        a, b = max(joint.start, start), min(joint.end, end)
        if b <= a:
            continue
        left = _signal(joint.left, joint.start, joint.end, read, channels)
        right = _signal(joint.right, joint.start, joint.end, read, channels)
        correlation = _correlation(left, right)
        fade_out, fade_in = fade_weights(joint.end - joint.start, correlation, law)
        mixed = left * fade_out.astype(np.float32) + right * fade_in.astype(np.float32)
        out[:, a - start:b - start] = mixed[:, a - joint.start:b - joint.start]
    return out


def _signal(segment: Segment, a: int, b: int, read: SignalReader, channels: int) -> np.ndarray:
    if segment.kind == SILENCE:
        return np.zeros((channels, b - a), dtype=np.float32)
    return read(segment, a, b)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / denominator) if denominator > 1e-20 else 0.0
