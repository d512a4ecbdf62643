"""What a split returns: the tracks, the diarization used, the manifest and the files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .diarization import Diarization


class Tracks(Mapping[str, np.ndarray]):
    """Speaker name → float32 ``(channels, samples)``; long results load from their files on access."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None, paths: dict[str, Path] | None = None) -> None:
        self._arrays = dict(arrays or {})
        self._paths = dict(paths or {})

    def __getitem__(self, speaker: str) -> np.ndarray:
        if speaker in self._arrays:
            return self._arrays[speaker]
        if speaker in self._paths:
            from .audio import load_audio

            return load_audio(self._paths[speaker]).samples
        raise KeyError(speaker)

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays or self._paths)

    def __len__(self) -> int:
        return len(self._arrays or self._paths)


@dataclass
class SplitResult:
    """What :meth:`podsep.Splitter.split` returns.

    ``tracks`` maps speaker names to float32 ``(channels, num_samples)`` arrays
    at ``sample_rate``: exactly the input's length, rate and channel count.
    ``background`` is what no speaker was given (input minus the tracks), when
    it was made.
    """

    tracks: Mapping[str, np.ndarray]
    sample_rate: int
    diarization: Diarization
    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    background: np.ndarray | None = None

    @property
    def speakers(self) -> list[str]:
        return list(self.tracks)
