"""Sets of sample intervals, kept as sorted, disjoint ``[start, end)`` pairs.

Per-sample boolean masks cost a byte per sample and speaker (half a gigabyte
per speaker for three hours at 48 kHz); speaker activity changes a few thousand
times per hour. Interval sets keep the later stages' memory proportional to the
number of turns, not to the length of the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intervals:
    """Sorted, disjoint, non-empty ``[start, end)`` intervals of sample indices."""

    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> "Intervals":
        """Normalise any pairs: drop empty ones, sort, merge touching/overlapping ones."""
        clean = sorted((int(a), int(b)) for a, b in pairs if b > a)
        starts: list[int] = []
        ends: list[int] = []
        for a, b in clean:
            if ends and a <= ends[-1]:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        return cls(np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))

    @classmethod
    def empty(cls) -> "Intervals":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.starts.size)

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.starts.tolist(), self.ends.tolist()))

    @property
    def total(self) -> int:
        return int((self.ends - self.starts).sum())

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether each sample index lies inside the set."""
        points = np.asarray(points, dtype=np.int64)
        index = np.searchsorted(self.starts, points, side="right") - 1
        inside = index >= 0
        inside[inside] = points[inside] < self.ends[index[inside]]
        return inside

    def touches(self, start: int, end: int) -> bool:
        """Whether any interval overlaps ``[start, end)``."""
        if end <= start or not len(self):
            return False
        index = int(np.searchsorted(self.ends, start, side="right"))
        return index < len(self) and int(self.starts[index]) < end

    def union(self, other: "Intervals") -> "Intervals":
        return Intervals.of(self.pairs() + other.pairs())

    def intersect(self, other: "Intervals") -> "Intervals":
        result = []
        i = j = 0
        a, b = self.pairs(), other.pairs()
        while i < len(a) and j < len(b):
            start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if end > start:
                result.append((start, end))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return Intervals.of(result)

    def subtract(self, other: "Intervals") -> "Intervals":
        result = []
        cuts = other.pairs()
        j = 0
        for start, end in self.pairs():
            while j < len(cuts) and cuts[j][1] <= start:
                j += 1
            k = j
            cursor = start
            while k < len(cuts) and cuts[k][0] < end:
                if cuts[k][0] > cursor:
                    result.append((cursor, cuts[k][0]))
                cursor = max(cursor, cuts[k][1])
                k += 1
            if cursor < end:
                result.append((cursor, end))
        return Intervals.of(result)

    def clip(self, start: int, end: int) -> "Intervals":
        return self.intersect(Intervals.of([(start, end)]))

    def mask(self, start: int, end: int) -> np.ndarray:
        """Boolean mask of ``[start, end)`` (for short spans such as one window)."""
        out = np.zeros(max(end - start, 0), dtype=bool)
        for a, b in self.clip(start, end).pairs():
            out[a - start:b - start] = True
        return out


def speaker_intervals(turns: Iterable[tuple[float, float, str]], speakers: list[str], sample_rate: float,
                      num_samples: int) -> dict[str, Intervals]:
    """Each speaker's active samples, with the same rounding as ``Diarization.activity``."""
    pairs: dict[str, list[tuple[int, int]]] = {s: [] for s in speakers}
    for start, end, speaker in turns:
        if speaker in pairs:
            a = min(max(int(round(start * sample_rate)), 0), num_samples)
            b = min(max(int(round(end * sample_rate)), 0), num_samples)
            pairs[speaker].append((a, b))
    return {s: Intervals.of(p) for s, p in pairs.items()}


def union_all(sets: Iterable[Intervals]) -> Intervals:
    pairs: list[tuple[int, int]] = []
    for item in sets:
        pairs.extend(item.pairs())
    return Intervals.of(pairs)


class SpeakerActivity:
    """Who is active where, as interval sets per speaker, computed once per run and rate.

    Every stage needs the same facts (each speaker's turns, where they talk
    alone, where others talk); they used to be rebuilt from the turns at every
    stage. A run builds this once from the diarization and hands it on.
    """

    def __init__(self, turns: Iterable[tuple[float, float, str]], speakers: list[str], sample_rate: float,
                 num_samples: int) -> None:
        self.turns = [(float(a), float(b), s) for a, b, s in turns]
        self.speakers = list(speakers)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.active = speaker_intervals(self.turns, self.speakers, sample_rate, num_samples)
        self._others: dict[str, Intervals] = {}

    def __getitem__(self, speaker: str) -> Intervals:
        return self.active[speaker]

    def others(self, speaker: str) -> Intervals:
        """Where anyone but ``speaker`` talks."""
        if speaker not in self._others:
            self._others[speaker] = union_all(self.active[s] for s in self.speakers if s != speaker)
        return self._others[speaker]

    def solo(self, speaker: str) -> Intervals:
        """Where ``speaker`` talks and nobody else does."""
        return self.active[speaker].subtract(self.others(speaker))

    def overlapped(self, speaker: str) -> Intervals:
        """Where ``speaker`` talks over someone."""
        return self.active[speaker].intersect(self.others(speaker))

    def at_rate(self, sample_rate: float, num_samples: int) -> "SpeakerActivity":
        """The same activity on another sample grid (same rounding as computing it from the turns)."""
        if sample_rate == self.sample_rate and num_samples == self.num_samples:
            return self
        return SpeakerActivity(self.turns, self.speakers, sample_rate, num_samples)

    def longest_solo_runs(self, speaker: str, seconds: float, *, min_seconds: float = 0.0,
                          fallback_to_all: bool = False) -> list[tuple[int, int]]:
        """The speaker's longest solo stretches, longest first, cut to ``seconds`` in total.

        Runs shorter than ``min_seconds`` are left out. With ``fallback_to_all``,
        a speaker who never talks alone contributes all their speech instead.
        """
        runs = self.solo(speaker).pairs()
        if not runs and fallback_to_all:
            runs = self.active[speaker].pairs()
        runs.sort(key=lambda run: run[1] - run[0], reverse=True)
        budget = int(seconds * self.sample_rate)
        shortest = min_seconds * self.sample_rate
        chosen = []
        for start, end in runs:
            if budget <= 0 or end - start < shortest:
                break
            end = min(end, start + budget)
            chosen.append((start, end))
            budget -= end - start
        return chosen
