"""The JSON manifest: everything a run did, built from the stages' results.

It is the contract with everything downstream (editors' files, batch status,
evaluation): the input's identity, the models and any fallback, the settings,
each speaker's times, and how every overlap was handled and with what
confidence.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from . import __version__
from .assignment import WindowAssignment
from .audio import Audio, FileAudio
from .config import Settings
from .diarization import Diarization
from .intervals import SpeakerActivity
from .overlaps import OverlapRegion, Window
from .run import Run

HANDLING = {"duplicate": "duplicated", "mute": "muted"}


def build_manifest(label: str, fingerprint: str, source: Audio | FileAudio, diarization: Diarization,
                   activity: SpeakerActivity, regions: list[OverlapRegion], windows: list[Window],
                   assignments: list[WindowAssignment], settings: Settings, overlap_policy: str,
                   models: dict[str, Any], run: Run) -> dict[str, Any]:
    """The manifest of one run; ``overlap_policy`` is the policy in force after any fallback."""
    by_region: dict[int, list[dict[str, Any]]] = {}
    for window, outcome in zip(windows, assignments):
        by_region.setdefault(window.region, []).append(_window_entry(window, outcome))
    overlaps = []
    for index, region in enumerate(regions):
        handled = by_region.get(index, [])
        if overlap_policy == "separate":
            handling = "separated" if handled else "mixture"
        else:
            handling = HANDLING[overlap_policy]
        overlaps.append({
            "start": round(region.start, 3), "end": round(region.end, 3), "speakers": list(region.speakers),
            "handling": handling, "windows": handled,
            "confidence": min((w["confidence"] for w in handled), default=None),
        })
    rate = activity.sample_rate
    speaker_rows = [{
        "name": speaker,
        "talk_time": round(diarization.talk_time(speaker), 3),
        "solo_time": round(activity.solo(speaker).total / rate, 2),
        "overlap_time": round(activity.overlapped(speaker).total / rate, 2),
    } for speaker in activity.speakers]
    return {
        "podsep_version": __version__,
        "input": {
            "source": label, "sample_rate": source.sample_rate, "channels": source.num_channels,
            "num_samples": source.num_frames, "duration": round(source.duration, 6), "sha256": fingerprint,
        },
        "models": models,
        "fallbacks": {k: v for k, v in run.notes.items() if k.endswith("fallback")},
        "diarization_cache": run.notes.get("diarization_cache"),
        "parameters": settings.to_dict(),
        "overlap_policy": overlap_policy,
        "speakers": speaker_rows,
        "overlaps": overlaps,
        "timings": dict(run.timings),
        "real_time_factor": round(sum(run.timings.values()) / max(source.duration, 1e-9), 4),
        "warnings": list(run.warnings),
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
    }


def _window_entry(window: Window, outcome: WindowAssignment) -> dict[str, Any]:
    entry = {
        "start": round(window.start, 3), "end": round(window.end, 3),
        "core_start": round(window.core_start, 3), "core_end": round(window.core_end, 3),
        "assignment": outcome.source_index,
        "confidence": round(outcome.confidence, 4),
        "evidence": outcome.evidence,
        "margins": outcome.margins,
        "gain_db": {s: (round(g, 2) if np.isfinite(g) else None) for s, g in outcome.gains_db.items()},
        "left_as_mixture": list(outcome.unassigned_speakers),
    }
    rendering = outcome.rendering
    if rendering:
        entry["rendering"] = rendering
    return entry


def describe_model(thing: Any) -> Any:
    """A model's own description (``describe()``), or its type for test doubles."""
    if thing is None:
        return None
    return thing.describe() if hasattr(thing, "describe") else {"kind": type(thing).__name__}
