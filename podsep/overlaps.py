"""Where people talk at once, and the windows the separator will see.

Separation is expensive (SepFormer's memory grows with the square of the input
length) and only needed where two or more speakers are active together, so
podsep runs it on windows around overlapped regions only. Each window carries
context on both sides, where each voice is heard alone: the separator benefits
from it, and the assignment stage uses it to tell which output is whom. Regions
longer than the model can take are split into overlapping chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .diarization import Diarization


@dataclass(frozen=True)
class OverlapRegion:
    """A stretch (seconds) where at least two speakers talk at once, after merging close ones."""

    start: float
    end: float
    speakers: tuple[str, ...]  # every speaker active in it, most talkative first

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Window:
    """One separator input.

    ``[start, end)`` is what the separator hears; only ``[core_start, core_end)``
    of its output is used in the tracks. Consecutive chunks of one long region
    share the audio around their core boundary, which lets their outputs be
    matched to each other and crossfaded.
    """

    index: int
    region: int
    chunk: int
    num_chunks: int
    start: float
    end: float
    core_start: float
    core_end: float
    speakers: tuple[str, ...]  # active in the core, most talkative first

    @property
    def duration(self) -> float:
        return self.end - self.start


def active_speakers_between(diarization: Diarization, start: float, end: float) -> tuple[str, ...]:
    """Speakers with speech inside ``[start, end)``, ordered by their talk time there (desc)."""
    talk: dict[str, float] = {}
    for turn in diarization.turns:
        shared = min(turn.end, end) - max(turn.start, start)
        if shared > 0:
            talk[turn.speaker] = talk.get(turn.speaker, 0.0) + shared
    return tuple(sorted(talk, key=lambda label: (-talk[label], label)))


def find_overlap_regions(
    diarization: Diarization, *, min_duration: float = 0.05, merge_gap: float = 0.5
) -> list[OverlapRegion]:
    """Regions with two or more active speakers.

    Raw overlaps closer than ``merge_gap`` are merged (one separator call instead
    of several, and no in-and-out switching between them); merged regions shorter
    than ``min_duration`` are dropped (typically boundary jitter of a diarizer).
    """
    events: list[tuple[float, int]] = []
    for turn in diarization.turns:
        events.append((turn.start, +1))
        events.append((turn.end, -1))
    events.sort(key=lambda event: (event[0], event[1]))  # ends before starts at equal times
    raw: list[tuple[float, float]] = []
    active = 0
    opened: float | None = None
    for time, step in events:
        before = active
        active += step
        if before < 2 <= active:
            opened = time
        elif before >= 2 > active and opened is not None:
            if time > opened:
                raw.append((opened, time))
            opened = None
    merged: list[list[float]] = []
    for start, end in raw:
        if merged and start - merged[-1][1] <= merge_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [
        OverlapRegion(start, end, active_speakers_between(diarization, start, end))
        for start, end in merged
        if end - start >= min_duration
    ]


def plan_windows(
    regions: list[OverlapRegion],
    diarization: Diarization,
    duration: float,
    *,
    context: float = 1.0,
    max_window: float = 30.0,
    chunk_overlap: float = 2.0,
) -> list[Window]:
    """Padded, length-limited separator windows covering every region's core exactly once.

    A region whose padded length fits ``max_window`` becomes one window. A longer
    one is cut into cores of equal length; each chunk is padded with ``context``
    at the region's outer ends and with ``chunk_overlap / 2`` (at least the
    context) at inner boundaries, so neighbouring chunks share audio.
    """
    windows: list[Window] = []
    inner_pad = max(context, chunk_overlap / 2.0)
    for region_index, region in enumerate(regions):
        padded = region.duration + 2 * context
        if padded <= max_window:
            bounds = [(region.start, region.end)]
        else:
            usable = max(max_window - 2 * inner_pad, 1.0)
            count = int(-(-region.duration // usable))  # ceil
            step = region.duration / count
            bounds = [
                (region.start + k * step, region.end if k == count - 1 else region.start + (k + 1) * step)
                for k in range(count)
            ]
        for chunk, (core_start, core_end) in enumerate(bounds):
            left = context if chunk == 0 else inner_pad
            right = context if chunk == len(bounds) - 1 else inner_pad
            start = max(0.0, core_start - left)
            end = min(duration, core_end + right)
            speakers = active_speakers_between(diarization, core_start, core_end)
            windows.append(
                Window(
                    index=len(windows), region=region_index, chunk=chunk, num_chunks=len(bounds),
                    start=start, end=end, core_start=core_start, core_end=core_end, speakers=speakers,
                )
            )
    return windows
