"""Diarizing long recordings in long pieces, then linking speakers across pieces.

Diarizers cluster all their embeddings at once: pyannote's pipeline holds one
embedding per (10 s chunk, local speaker) and compares them pairwise, so memory
grows with the square of the recording's length (a three-hour file means tens
of thousands of embeddings and gigabytes of distances). podsep cuts recordings
longer than ``diarization.chunk_minutes`` into pieces at quiet moments,
diarizes each piece on its own, and links the pieces' speakers by comparing
voice embeddings of their solo speech (two speakers of one piece are never
merged). Memory is then bounded by the piece length, not the file length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..diarization import Diarization
from ..intervals import SpeakerActivity

ProgressHook = Callable[..., Any]


class ChunkedDiarizer:
    """Wraps a diarizer: pieces of at most ``chunk_seconds``, speakers linked by ``inner.embed``."""

    def __init__(self, inner: Any, chunk_seconds: float, *, link_threshold: float = 0.35,
                 search_seconds: float = 15.0, reference_seconds: float = 30.0) -> None:
        self.inner = inner
        self.chunk_seconds = chunk_seconds
        self.link_threshold = link_threshold
        self.search_seconds = search_seconds
        self.reference_seconds = reference_seconds
        self.last_cuts: list[float] = []

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray | None:
        return self.inner.embed(waveforms, sample_rate) if hasattr(self.inner, "embed") else None

    def describe(self) -> dict[str, Any]:
        description = dict(self.inner.describe()) if hasattr(self.inner, "describe") else {}
        description["chunking"] = {"chunk_seconds": self.chunk_seconds, "link_threshold": self.link_threshold}
        return description

    def __call__(self, waveform: np.ndarray, sample_rate: int, *, num_speakers: int | None = None,
                 min_speakers: int | None = None, max_speakers: int | None = None,
                 hook: ProgressHook | None = None) -> Diarization:
        duration = len(waveform) / sample_rate
        if duration <= self.chunk_seconds * 1.25:
            return self.inner(waveform, sample_rate, num_speakers=num_speakers, min_speakers=min_speakers,
                              max_speakers=max_speakers, hook=hook)
        cuts = quiet_cut_points(waveform, sample_rate, self.chunk_seconds, self.search_seconds)
        self.last_cuts = cuts
        bounds = list(zip([0.0] + cuts, cuts + [duration]))
        pieces: list[Diarization] = []
        for number, (start, end) in enumerate(bounds, start=1):
            segment = waveform[int(round(start * sample_rate)):int(round(end * sample_rate))]
            piece = self.inner(segment, sample_rate, num_speakers=None,
                               min_speakers=None, max_speakers=num_speakers or max_speakers, hook=hook)
            pieces.append(Diarization.from_turns([(t.start + start, t.end + start, t.speaker) for t in piece.turns]))
            if hook:
                hook("pieces", None, completed=number, total=len(bounds))
        return self._link(waveform, sample_rate, pieces, num_speakers, min_speakers, max_speakers, hook)

    def _link(self, waveform: np.ndarray, sample_rate: int, pieces: list[Diarization], num_speakers: int | None,
              min_speakers: int | None, max_speakers: int | None, hook: ProgressHook | None) -> Diarization:
        items: list[tuple[int, str]] = []
        clips: list[np.ndarray] = []
        for index, piece in enumerate(pieces):
            for speaker in piece.speakers:
                items.append((index, speaker))
                clips.append(_voice_sample(waveform, sample_rate, piece, speaker, self.reference_seconds))
        if not items:
            return Diarization()
        vectors = self.embed(clips, sample_rate)
        if vectors is None:
            labels = [f"P{index}_{speaker}" for index, speaker in items]  # cannot link: keep pieces apart
        else:
            groups = link_speakers(np.asarray(vectors, dtype=np.float64), [index for index, _ in items],
                                   threshold=self.link_threshold, exact=num_speakers,
                                   low=min_speakers, high=max_speakers)
            labels = [f"SPEAKER_{group:02d}" for group in groups]
        mapping = {item: label for item, label in zip(items, labels)}
        if hook:
            hook("linking", None, completed=1, total=1)
        turns = [(t.start, t.end, mapping[(index, t.speaker)]) for index, piece in enumerate(pieces) for t in piece.turns]
        return Diarization.from_turns(turns)


def quiet_cut_points(waveform: np.ndarray, sample_rate: int, every: float, search: float) -> list[float]:
    """Cut times near each multiple of ``every`` seconds, at the quietest 0.5 s within ``±search`` seconds."""
    frame = int(0.1 * sample_rate)
    count = len(waveform) // frame
    energy = np.empty(count)
    block = 6000  # frames (10 minutes): a float64 copy of the whole file would be bigger than the file
    for first in range(0, count, block):
        last = min(count, first + block)
        part = waveform[first * frame:last * frame].astype(np.float64).reshape(last - first, frame)
        energy[first:last] = np.einsum("ij,ij->i", part, part) / frame
    smooth = np.convolve(energy, np.ones(5) / 5, mode="same")
    duration = len(waveform) / sample_rate
    cuts = []
    target = every
    while target < duration - every * 0.25:
        low = max(0, int((target - search) / 0.1))
        high = min(count, int((target + search) / 0.1) + 1)
        best = low + int(np.argmin(smooth[low:high])) if high > low else int(target / 0.1)
        cuts.append(round(best * 0.1 + 0.05, 3))
        target = cuts[-1] + every
    return cuts


def _voice_sample(waveform: np.ndarray, sample_rate: int, piece: Diarization, speaker: str, seconds: float) -> np.ndarray:
    """Up to ``seconds`` of the speaker's solo speech in the piece (all their speech if they never talk alone)."""
    activity = SpeakerActivity([(t.start, t.end, t.speaker) for t in piece.turns], piece.speakers, sample_rate,
                               len(waveform))
    parts = [waveform[a:b] for a, b in activity.longest_solo_runs(speaker, seconds, fallback_to_all=True)]
    return np.concatenate(parts) if parts else np.zeros(sample_rate, dtype=np.float32)


def link_speakers(vectors: np.ndarray, pieces: list[int], *, threshold: float, exact: int | None = None,
                  low: int | None = None, high: int | None = None) -> list[int]:
    """Average-linkage clustering on cosine distance, never merging two speakers of one piece.

    Merges while the closest allowed pair is nearer than ``threshold``, then
    keeps merging (or stops early) to honour ``exact``/``low``/``high``.
    Returns a group number per item, numbered in order of first appearance.
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    distance = 1.0 - unit @ unit.T
    clusters: list[list[int]] = [[i] for i in range(len(vectors))]
    target_low = exact if exact is not None else (low or 1)
    target_high = exact if exact is not None else high

    def allowed(a: list[int], b: list[int]) -> bool:
        return not ({pieces[i] for i in a} & {pieces[j] for j in b})

    def linkage(a: list[int], b: list[int]) -> float:
        return float(distance[np.ix_(a, b)].mean())

    while len(clusters) > 1:
        best, pair = np.inf, None
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                if allowed(clusters[i], clusters[j]):
                    value = linkage(clusters[i], clusters[j])
                    if value < best:
                        best, pair = value, (i, j)
        if pair is None:
            break  # only same-piece pairs left
        must_merge = target_high is not None and len(clusters) > target_high
        if best >= threshold and not must_merge:
            break
        if len(clusters) <= target_low:
            break
        i, j = pair
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]
    group_of = {}
    for number, cluster in enumerate(sorted(clusters, key=min)):
        for item in cluster:
            group_of[item] = number
    return [group_of[i] for i in range(len(vectors))]
