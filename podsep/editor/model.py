"""What the editor files are made from: one immutable summary of a finished split.

The timeline picture, the Audacity labels, the REAPER project, the review page
and the terminal timeline all read this one value, so they cannot disagree
about who spoke when, and none of them needs the pipeline's internal types
(which may move) or the audio itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EditorInput:
    """A finished split as the editor files need it.

    ``turns`` are ``(start, end, speaker)`` in seconds, overlapping turns
    included (exactly the diarization that built the tracks); ``overlaps`` are
    the manifest's ``overlaps`` entries; file names in ``track_files`` and
    ``background_file`` are relative to the result folder, while
    ``original_path`` is absolute because the original is never copied there.
    """

    stem: str
    duration: float
    sample_rate: int
    num_samples: int
    speakers: tuple[str, ...]
    turns: tuple[tuple[float, float, str], ...]
    overlaps: tuple[dict, ...] = ()
    track_files: dict[str, str] = field(default_factory=dict)
    background_file: str | None = None
    original_path: str | None = None
    warnings: tuple[str, ...] = ()
    fallbacks: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    @classmethod
    def from_manifest(
        cls,
        manifest: Mapping[str, Any],
        turns: Iterable[Any],
        stem: str,
        track_files: Mapping[str, str],
        background_file: str | None = None,
    ) -> "EditorInput":
        """Build from a manifest (the layout ``podsep.split`` writes) and the turns used.

        ``turns`` may be :class:`podsep.Turn` objects or ``(start, end, speaker)``
        tuples. ``input.source`` becomes ``original_path`` only when it names a
        file that exists, resolved to an absolute path, because the REAPER project
        and the page must find the original from wherever they are opened.
        """
        source = dict(manifest.get("input") or {})
        sample_rate = int(source.get("sample_rate") or 0)
        num_samples = int(source.get("num_samples") or 0)
        duration = source.get("duration")
        if duration is None:
            duration = num_samples / sample_rate if sample_rate else 0.0
        clean_turns = tuple(sorted(_turn_tuple(turn) for turn in turns))
        speakers = [str(row["name"]) for row in manifest.get("speakers") or [] if "name" in row]
        for _, _, speaker in clean_turns:
            if speaker not in speakers:
                speakers.append(speaker)
        return cls(
            stem=stem,
            duration=float(duration),
            sample_rate=sample_rate,
            num_samples=num_samples,
            speakers=tuple(speakers),
            turns=clean_turns,
            overlaps=tuple(dict(entry) for entry in manifest.get("overlaps") or []),
            track_files=dict(track_files),
            background_file=background_file,
            original_path=_existing_file(source.get("source")),
            warnings=tuple(str(w) for w in manifest.get("warnings") or []),
            fallbacks=dict(manifest.get("fallbacks") or {}),
            models=dict(manifest.get("models") or {}),
        )


def _turn_tuple(turn: Any) -> tuple[float, float, str]:
    if hasattr(turn, "speaker"):
        return float(turn.start), float(turn.end), str(turn.speaker)
    start, end, speaker = turn
    return float(start), float(end), str(speaker)


def _existing_file(source: Any) -> str | None:
    """The absolute path of ``source`` when it is a file on disk (in-memory input has none)."""
    if not isinstance(source, str) or not source:
        return None
    try:
        path = Path(source).expanduser()
        return str(path.resolve()) if path.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None
