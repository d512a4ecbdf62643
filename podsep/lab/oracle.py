"""An oracle separator: returns the true sources of a window, as a model would.

It knows the reference tracks of a synthetic conversation and, like a real
model, hands them back **in a shuffled order and at random gains**, so the
assignment and level-restoration stages are tested for real. It records what it
did per window, so tests can score the assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def locate_window(mixture: np.ndarray, window: np.ndarray) -> int:
    """Where ``window``, an exact slice of ``mixture``, starts.

    Matched from the window's first non-zero sample and checked whole: a window
    that opens on digital silence would match anywhere by its first samples.
    """
    nonzero = np.flatnonzero(window)
    if nonzero.size == 0:
        raise ValueError("cannot locate an all-zero window")
    k = int(nonzero[0])
    for candidate in np.flatnonzero(mixture == window[k]) - k:
        if candidate >= 0 and np.array_equal(mixture[candidate:candidate + len(window)], window):
            return int(candidate)
    raise ValueError("window is not a slice of the mixture")


@dataclass
class OracleCall:
    start: int                 # window start in samples of the mixture
    length: int
    order: list[str]           # speaker label of each returned source
    gains: list[float]


@dataclass
class OracleSeparator:
    """``references``: speaker label -> mono track at the mixture's rate (sums to ``mixture``)."""

    mixture: np.ndarray
    references: dict[str, np.ndarray]
    seed: int = 0
    min_sources: int = 2
    calls: list[OracleCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self.mixture = np.asarray(self.mixture, dtype=np.float32)

    def describe(self) -> dict:
        return {"kind": "oracle", "note": "reference sources, shuffled, random gains"}

    def locate(self, window: np.ndarray) -> int:
        """Where ``window`` (an exact slice of the mixture) starts."""
        return locate_window(self.mixture, window)

    def __call__(self, window: np.ndarray, sample_rate: int) -> np.ndarray:
        start = self.locate(np.asarray(window, dtype=np.float32))
        stop = start + len(window)
        present = [label for label, track in self.references.items() if np.any(track[start:stop])]
        silent = [label for label in self.references if label not in present]
        labels = present + silent[: max(0, self.min_sources - len(present))]
        order = [labels[i] for i in self._rng.permutation(len(labels))]
        gains = self._rng.uniform(0.1, 10.0, size=len(order))
        self.calls.append(OracleCall(start, len(window), order, [float(g) for g in gains]))
        return np.stack([self.references[label][start:stop] * g for label, g in zip(order, gains)]).astype(np.float32)
