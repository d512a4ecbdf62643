"""Assembly stage: plan each speaker's track and render it block by block.

The plan (pure, :mod:`podsep.assembly`) says which samples come from the
original, from a separated window or are silent, and where the crossfades go;
rendering reads the original in blocks and streams every track into its file
(and into memory when that is small enough), so memory does not grow with the
recording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .assembly import ORIGINAL, SEPARATED, SeparatedSpan, Segment, TrackPlan, plan_track, render
from .assignment import WindowAssignment
from .audio import Audio, FileAudio
from .config import Settings
from .diarization import to_samples
from .errors import PodsepError
from .export import ResultStaging, safe_name
from .intervals import SpeakerActivity
from .overlaps import Window
from .run import Run

BLOCK_SECONDS = 30.0  # assembly renders and writes this much audio at a time
BACKGROUND = "\x00background"  # the background's key among the writers (no speaker can be called that)


def plan_tracks(activity: SpeakerActivity, windows: list[Window], bounds: list[tuple[int, int]],
                assignments: list[WindowAssignment], overlap_policy: str, settings: Settings) -> dict[str, TrackPlan]:
    """Every speaker's track plan; ``overlap_policy`` is the one in force (after any fallback)."""
    rate, length = activity.sample_rate, activity.num_samples
    spans = [
        SeparatedSpan(i, a, b, to_samples(w.core_start, rate, length), to_samples(w.core_end, rate, length))
        for i, (w, (a, b)) in enumerate(zip(windows, bounds))
    ]
    fade = int(round(settings.assembly.crossfade * rate))
    plans = {}
    for speaker in activity.speakers:
        mine = {i for i, outcome in enumerate(assignments) if speaker in outcome.source_index}
        plans[speaker] = plan_track(activity[speaker], activity.others(speaker), spans, mine, length,
                                    overlap_policy=overlap_policy, fade=fade, speaker=speaker)
    return plans


@dataclass
class Rendered:
    """What the assembly stage produced: arrays kept in memory, clipped tracks, the background."""

    arrays: dict[str, np.ndarray]
    clipped: list[str]
    background: np.ndarray | None = None
    identity_error: float | None = None  # max |tracks + background - input| as stored


def render_tracks(source: Audio | FileAudio, plans: dict[str, TrackPlan], windows: list[Window],
                  bounds: list[tuple[int, int]], assignments: list[WindowAssignment], settings: Settings,
                  run: Run, staging: ResultStaging | None, keep: bool, *, background: bool = False) -> Rendered:
    """Render every track block by block; stream into files and/or keep arrays.

    With ``background``, a last track holds whatever the speaker tracks leave
    of the input (input minus their sum as stored), so that the speaker tracks
    and the background add up to the input.
    """
    rate, length, channels = source.sample_rate, source.num_frames, source.num_channels
    arrays = {s: np.zeros((channels, length), dtype=np.float32) for s in plans} if keep else {}
    rest = np.zeros((channels, length), dtype=np.float32) if keep and background else None
    writers: dict[str, Any] = {}
    if staging is not None:
        for speaker in plans:
            writers[speaker] = staging.track_writer(speaker, rate, channels, fmt=settings.output.format,
                                                    bit_depth=settings.output.bit_depth)
        if background:
            writers[BACKGROUND] = staging.background_writer(rate, channels, fmt=settings.output.format,
                                                            bit_depth=settings.output.bit_depth)
    block = max(1, int(BLOCK_SECONDS * rate))
    total_blocks = max(1, -(-length // block))
    identity = 0.0
    try:
        for number, start in enumerate(range(0, length, block), start=1):
            stop = min(length, start + block)
            original = source.read(start, stop)

            def read(segment: Segment, a: int, b: int, speaker: str) -> np.ndarray:
                if segment.kind == ORIGINAL:
                    if start <= a and b <= stop:
                        return original[:, a - start:b - start]
                    return source.read(a, b)
                if segment.kind == SEPARATED:
                    offset = bounds[segment.window][0]
                    return assignments[segment.window].source(speaker, a - offset, b - offset)
                raise AssertionError(segment.kind)

            total = np.zeros_like(original, dtype=np.float64) if background else None
            for speaker, plan in plans.items():
                out = render(plan, start, stop, lambda seg, a, b, s=speaker: read(seg, a, b, s), channels,
                             settings.assembly.crossfade_law)
                if keep:
                    arrays[speaker][:, start:stop] = out
                if speaker in writers:
                    writers[speaker].write(out)
                if total is not None:
                    total += writers[speaker].stored(out) if speaker in writers else out
            if total is not None:
                leftover = original - total  # float64: quantised once, by the writer
                stored = writers[BACKGROUND].stored(leftover) if BACKGROUND in writers else leftover
                if BACKGROUND in writers:
                    writers[BACKGROUND].write(leftover)
                if rest is not None:
                    rest[:, start:stop] = stored.astype(np.float32)
                identity = max(identity, float(np.max(np.abs(total + stored - original), initial=0.0)))
            run.report("assembly", None, completed=number, total=total_blocks)
        for writer in writers.values():
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    clipped = [s for s, w in writers.items() if w.clipped_samples and s != BACKGROUND]
    return Rendered(arrays, clipped, rest, identity if background else None)


def background_plan(settings: Settings, policy: str, speakers: list[str]) -> dict[str, Any]:
    """Whether the background track is written, and why not when it is not."""
    plan: dict[str, Any] = {"written": False, "method": "input minus the speaker tracks as stored"}
    if not settings.output.background:
        plan["reason"] = "output.background is off"
    elif policy == "duplicate":
        plan["reason"] = ("overlaps are duplicated into every active track, so the tracks add up to more than the "
                          "input there: no background can make them add up")
    else:
        if any(safe_name(s).lower() == "background" for s in speakers):
            raise PodsepError("the speaker name 'background' is reserved for the background track "
                              "(choose another name, or use --no-background)")
        plan["written"] = True
    return plan
