"""Per-speaker tracks at the input's full length, rate and channel count.

Each track is a sequence of *segments*, each drawn from one signal:

* ``original``: the input itself, where the speaker talks alone (bit-exact);
* ``separated``: the speaker's rescaled source from one window, inside overlaps;
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
    speaker_row: int,
    activity: np.ndarray,
    spans: Sequence[SeparatedSpan],
    assigned: dict[int, set[int]],
    *,
    overlap_policy: str,
    fade: int,
    speaker: str = "",
) -> TrackPlan:
    """Segments and joints for one speaker.

    ``activity``: boolean ``(num_speakers, num_samples)``; ``assigned[w]``: the
    speaker rows that received a source in window ``w``. ``overlap_policy`` decides
    what an overlap the separator did not handle becomes: the mixture
    (``separate``/``duplicate``) or silence (``mute``).
    """
    num_samples = activity.shape[1]
    mine = activity[speaker_row]
    others = np.delete(activity, speaker_row, axis=0).any(axis=0) if activity.shape[0] > 1 else np.zeros(num_samples, bool)

    kind = np.full(num_samples, 0, dtype=np.int8)  # 0 silence, 1 original, 2 separated
    window_of = np.full(num_samples, -1, dtype=np.int32)
    kind[mine] = 1
    if overlap_policy == "mute":
        kind[mine & others] = 0
    for span in spans:
        if speaker_row in assigned.get(span.window, set()):
            core = slice(span.core_start, span.core_end)
            active = mine[core]
            kind[core] = np.where(active, 2, 0)
            window_of[core] = np.where(active, span.window, -1)

    segments = _runs(kind, window_of)
    by_window = {span.window: span for span in spans}
    joints = [
        _place_joint(left, right, segments, index, others, by_window, fade)
        for index, (left, right) in enumerate(zip(segments, segments[1:]))
    ]
    return TrackPlan(speaker, segments, [j for j in joints if j is not None])


def _runs(kind: np.ndarray, window_of: np.ndarray) -> list[Segment]:
    names = {0: SILENCE, 1: ORIGINAL, 2: SEPARATED}
    key = kind.astype(np.int64) * 1_000_003 + window_of
    change = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(kind)]])
    return [Segment(int(s), int(e), names[int(kind[s])], int(window_of[s])) for s, e in zip(starts, ends)]


def _place_joint(
    left: Segment,
    right: Segment,
    segments: list[Segment],
    index: int,
    others: np.ndarray,
    spans: dict[int, SeparatedSpan],
    fade: int,
) -> Joint | None:
    """Where the crossfade between two neighbouring segments goes (see module docstring)."""
    if fade <= 0:
        return None
    boundary = left.start + left.length

    def budget(segment: Segment, position: int) -> int:
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
        voiced_position = index + 1 if voiced is right else index
        length = min(fade, silent.length // 2, budget(voiced, voiced_position))
        outside = (boundary - length, boundary) if silent is left else (boundary, boundary + length)
        quiet = not others[outside[0]:outside[1]].any() if voiced.kind == ORIGINAL else True
        if length > 0 and quiet and available(voiced, *outside):
            return Joint(outside[0], outside[1], left, right)
        length = min(fade, budget(voiced, voiced_position))
        inside = (boundary, boundary + length) if voiced is right else (boundary - length, boundary)
        return Joint(inside[0], inside[1], left, right) if length > 0 else None
    if kinds in ((ORIGINAL, SEPARATED), (SEPARATED, ORIGINAL)):
        original = left if left.kind == ORIGINAL else right
        position = index if original is left else index + 1
        length = min(fade, budget(original, position))
        region = (boundary - length, boundary) if original is left else (boundary, boundary + length)
        separated = right if original is left else left
        span = spans[separated.window]
        region = (max(region[0], span.start), min(region[1], span.end))
        return Joint(region[0], region[1], left, right) if region[1] > region[0] else None
    # separated -> separated (chunks of one long overlap, or two nearby windows)
    half = min(fade, budget(left, index), budget(right, index + 1)) // 2
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
