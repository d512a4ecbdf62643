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
