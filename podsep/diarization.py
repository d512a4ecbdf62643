"""Who speaks when: the diarization data type, RTTM I/O and activity masks.

Every diarizer (the pyannote pipeline, the embedded one, a user's RTTM file)
produces a :class:`Diarization`; every later stage reads only this type, so the
stages do not care where the turns came from. Turns of different speakers may
overlap: that is exactly the information podsep needs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


@dataclass(frozen=True, order=True)
class Turn:
    """One stretch of speech by one speaker, in seconds from the start of the file."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Diarization:
    """A set of (possibly overlapping) speaker turns.

    Turns are kept sorted by start time. Turns of the same speaker that touch or
    overlap are merged on construction, so "speaker X is active" is a plain union
    of intervals.
    """

    turns: tuple[Turn, ...] = field(default_factory=tuple)
    uri: str = "audio"

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(_merge_same_speaker(self.turns)))

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_turns(cls, turns: Iterable[tuple[float, float, str] | Turn], uri: str = "audio") -> "Diarization":
        """Build from ``(start, end, speaker)`` tuples; empty or inverted turns are dropped."""
        clean = []
        for item in turns:
            start, end, speaker = (item.start, item.end, item.speaker) if isinstance(item, Turn) else item
            if end > start:
                clean.append(Turn(float(start), float(end), str(speaker)))
        return cls(tuple(clean), uri)

    @classmethod
    def from_annotation(cls, annotation: Any, uri: str | None = None) -> "Diarization":
        """Convert a ``pyannote.core.Annotation``."""
        turns = [
            (segment.start, segment.end, str(label))
            for segment, _, label in annotation.itertracks(yield_label=True)
        ]
        return cls.from_turns(turns, uri or getattr(annotation, "uri", None) or "audio")

    @classmethod
    def from_rttm(cls, path: str | Path, uri: str | None = None) -> "Diarization":
        """Read an RTTM file.

        RTTM files often hold several recordings; ``uri`` picks one. Without it the
        file must describe exactly one recording.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read diarization file {path}: {error}") from error
        by_uri: dict[str, list[tuple[float, float, str]]] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] != "SPEAKER" or len(fields) < 8:
                if fields[0] in {"SPKR-INFO", "SPEAKER"}:
                    continue
                raise InputError(f"{path}:{number}: not an RTTM SPEAKER line: {line.strip()[:80]}")
            try:
                onset, duration = float(fields[3]), float(fields[4])
            except ValueError as error:
                raise InputError(f"{path}:{number}: bad onset/duration in RTTM line") from error
            if not (math.isfinite(onset) and math.isfinite(duration)) or duration < 0 or onset < 0:
                raise InputError(f"{path}:{number}: negative or non-finite time in RTTM line")
            by_uri.setdefault(fields[1], []).append((onset, onset + duration, fields[7]))
        if uri is not None:
            if uri not in by_uri:
                known = ", ".join(sorted(by_uri)) or "none"
                raise InputError(f"{path} has no turns for recording '{uri}' (it has: {known})")
            return cls.from_turns(by_uri[uri], uri)
        if len(by_uri) > 1:
            raise InputError(
                f"{path} describes {len(by_uri)} recordings; pick one with its URI (e.g. file.rttm:{sorted(by_uri)[0]})"
            )
        if not by_uri:
            raise InputError(f"{path} has no speaker turns")
        (only_uri, turns), = by_uri.items()
        return cls.from_turns(turns, only_uri)

    # -- views --------------------------------------------------------------------
    @property
    def speakers(self) -> list[str]:
        """Speaker labels in order of first speech (ties broken by label)."""
        first: dict[str, float] = {}
        for turn in self.turns:
            first.setdefault(turn.speaker, turn.start)
        return sorted(first, key=lambda label: (first[label], label))

    @property
    def end(self) -> float:
        return max((turn.end for turn in self.turns), default=0.0)

    def talk_time(self, speaker: str) -> float:
        return sum(turn.duration for turn in self.turns if turn.speaker == speaker)

    def crop(self, duration: float) -> "Diarization":
        """Clip every turn to ``[0, duration]``."""
        return Diarization.from_turns(
            [(max(0.0, t.start), min(duration, t.end), t.speaker) for t in self.turns], self.uri
        )

    def rename(self, mapping: dict[str, str]) -> "Diarization":
        return Diarization.from_turns(
            [(t.start, t.end, mapping.get(t.speaker, t.speaker)) for t in self.turns], self.uri
        )

    def to_rttm(self, uri: str | None = None) -> str:
        """RTTM text, one SPEAKER line per turn, times in milliseconds precision."""
        name = _rttm_safe(uri or self.uri)
        lines = [
            f"SPEAKER {name} 1 {turn.start:.3f} {turn.duration:.3f} <NA> <NA> {_rttm_safe(turn.speaker)} <NA> <NA>"
            for turn in sorted(self.turns)
        ]
        return "\n".join(lines) + ("\n" if lines else "")

    def to_annotation(self) -> Any:
        """Convert to ``pyannote.core.Annotation`` (for scoring with pyannote.metrics)."""
        from pyannote.core import Annotation, Segment

        annotation = Annotation(uri=self.uri)
        for index, turn in enumerate(self.turns):
            annotation[Segment(turn.start, turn.end), index] = turn.speaker
        return annotation

    def activity(self, sample_rate: float, num_samples: int, speakers: Sequence[str] | None = None) -> np.ndarray:
        """Boolean ``(num_speakers, num_samples)`` mask of who is active at each sample.

        Sample ``n`` covers time ``n / sample_rate``; a turn covers samples
        ``[round(start * sr), round(end * sr))``.
        """
        speakers = list(self.speakers if speakers is None else speakers)
        mask = np.zeros((len(speakers), num_samples), dtype=bool)
        index = {label: row for row, label in enumerate(speakers)}
        for turn in self.turns:
            if turn.speaker not in index:
                continue
            start, end = to_samples(turn.start, sample_rate, num_samples), to_samples(turn.end, sample_rate, num_samples)
            mask[index[turn.speaker], start:end] = True
        return mask


def to_samples(seconds: float, sample_rate: float, limit: int | None = None) -> int:
    """Time to sample index, rounded, clipped to ``[0, limit]``."""
    index = int(round(seconds * sample_rate))
    index = max(0, index)
    return index if limit is None else min(limit, index)


def _merge_same_speaker(turns: Iterable[Turn]) -> list[Turn]:
    merged: list[Turn] = []
    open_by_speaker: dict[str, int] = {}
    for turn in sorted(turns, key=lambda t: (t.start, t.end, t.speaker)):
        if turn.end <= turn.start:
            continue
        previous = open_by_speaker.get(turn.speaker)
        if previous is not None and merged[previous].end >= turn.start:
            old = merged[previous]
            merged[previous] = Turn(old.start, max(old.end, turn.end), old.speaker)
            continue
        open_by_speaker[turn.speaker] = len(merged)
        merged.append(turn)
    return sorted(merged)


def _rttm_safe(text: str) -> str:
    """RTTM fields are whitespace-separated: replace whitespace inside a field."""
    return re.sub(r"\s+", "_", text) or "_"
