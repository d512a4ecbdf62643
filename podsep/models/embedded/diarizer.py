"""The embedded diarizer: VAD -> window embeddings -> clustering -> resegmentation.

Everything it needs ships inside PyPI wheels (``silero-vad`` for speech
activity, ``resemblyzer`` for the speaker-encoder weights), so it runs with no
network and no Hugging Face token. It is the fallback when pyannote's Hub
pipeline cannot be had, and it is what podsep uses to embed separated sources.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ...diarization import Diarization
from ...errors import InputError
from . import overlap_turns
from .clustering import ClusteringSettings, cluster, looks_like_one_speaker, prepare
from .speaker_embedding import FRAME_SECONDS as MEL_FRAME_SECONDS
from .speaker_embedding import GE2EEncoder, normalise_level
from .vad import SAMPLE_RATE, SileroVad, VadSettings

Hook = Callable[..., Any]


@dataclass(frozen=True)
class DiarizerSettings:
    """Window layout and resegmentation rules.

    ``window``/``hop`` (s): sliding embedding windows over speech; the encoder was
    trained on 1.6 s. ``step`` (s): resolution of the output labels.
    ``smoothing`` (s): width of the moving average applied to per-speaker scores
    before picking the best speaker, which acts like a median filter on labels.
    ``min_turn`` (s): shorter islands inside a speech region are given to the
    better-scoring neighbour, since a real turn change needs some speech.
    ``overlap``: add second-speaker turns where an overlap detector is installed.
    ``overlap_threshold``: detector probability above which a second speaker is
    added; stricter than the detector's own operating point (0.175, chosen for
    detection recall) because a false second speaker costs diarization more
    than a missed one. 0.35 was the best on the pyannote sample and AMI train
    (not on development or test).
    """

    window: float = 2.4
    hop: float = 0.4
    step: float = 0.02
    smoothing: float = 0.6
    min_turn: float = 0.5
    overlap: bool = True
    overlap_threshold: float | None = 0.35


def _split_tunables(tunables: dict[str, Any]) -> tuple[VadSettings, ClusteringSettings, DiarizerSettings]:
    """Route ``vad_*`` / ``cluster_*`` / plain keyword tunables to their settings objects."""
    groups = {"vad_": VadSettings(), "cluster_": ClusteringSettings(), "": DiarizerSettings()}
    updates: dict[str, dict[str, Any]] = {prefix: {} for prefix in groups}
    for key, value in tunables.items():
        for prefix, settings in groups.items():
            name = key[len(prefix):] if key.startswith(prefix) else None
            if name is not None and name in {f.name for f in fields(settings)}:
                updates[prefix][name] = value
                break
        else:
            raise TypeError(f"unknown embedded-diarizer setting: {key}")
    vad, clustering, main = (replace(groups[p], **updates[p]) for p in ("vad_", "cluster_", ""))
    return vad, clustering, main


class EmbeddedDiarizer:
    """Offline speaker diarization from wheel-shipped weights.

    Tunables (keyword arguments): any field of :class:`DiarizerSettings` by name,
    of :class:`VadSettings` with a ``vad_`` prefix, of
    :class:`ClusteringSettings` with a ``cluster_`` prefix.
    """

    #: GE2E (resemblyzer weights): the space :meth:`embed` returns, recorded by voice profiles.
    voice_space = "ge2e"

    def __init__(self, device: str = "cpu", **tunables: Any) -> None:
        self.device = device
        self.vad_settings, self.cluster_settings, self.settings = _split_tunables(tunables)
        self.vad = SileroVad(device, self.vad_settings)
        self.encoder = GE2EEncoder(device)

    # -- public API ---------------------------------------------------------------
    def __call__(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: Hook | None = None,
        uri: str = "audio",
    ) -> Diarization:
        """Diarize a mono waveform; returns possibly overlapping turns (overlaps only
        where an overlap detector is installed)."""
        _check_counts(num_speakers, min_speakers, max_speakers)
        report = hook or (lambda *args, **kwargs: None)
        audio = to_mono_16k(waveform, sample_rate)
        duration = audio.size / SAMPLE_RATE

        report("speech_activity", None, completed=0, total=1)
        regions = self.vad.regions(audio)
        report("speech_activity", regions, completed=1, total=1)
        if not regions or num_speakers == 0:
            return Diarization((), uri)

        spans, raw = self._window_embeddings(audio, regions, report)
        if num_speakers is None and (min_speakers or 0) <= 1 and looks_like_one_speaker(raw, self.cluster_settings):
            num_speakers = 1
        embeddings = prepare(raw, self.cluster_settings)
        report("clustering", None, completed=0, total=1)
        labels, centroids = cluster(
            embeddings,
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            settings=self.cluster_settings,
        )
        report("clustering", labels, completed=1, total=1)
        report("segmentation", None, completed=0, total=1)

        grid_labels, scores = self._resegment(regions, spans, embeddings, centroids, duration)
        speakers = [f"SPEAKER_{index:02d}" for index in range(len(centroids))]
        turns = _labels_to_turns(grid_labels, self.settings.step, speakers, duration)
        report("segmentation", turns, completed=1, total=1)

        extra: list[tuple[float, float, str]] = []
        if self.settings.overlap:
            report("overlap", None, completed=0, total=1)
            extra, _status = overlap_turns.second_speaker_turns(audio, grid_labels, scores, self.settings.step, speakers,
                                                                 threshold=self.settings.overlap_threshold)
            report("overlap", extra, completed=1, total=1)
        return Diarization.from_turns(turns + extra, uri)

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """(n, 256) L2-normalised speaker embeddings of arbitrary mono clips.

        Quiet stretches of a clip are ignored so that a full-length separated
        source with long silences is judged on its speech; a silent clip gives a
        zero row (it matches no one).
        """
        return embed_clips(self.encoder, waveforms, sample_rate)

    def window_embeddings(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Raw (uncentred) unit embeddings of the sliding windows over a recording's speech,
        exactly as the diarizer computes them before clustering (for fitting its statistics)."""
        audio = to_mono_16k(waveform, sample_rate)
        regions = self.vad.regions(audio)
        if not regions:
            return np.zeros((0, 256), dtype=np.float32)
        return self._window_embeddings(audio, regions, lambda *args, **kwargs: None)[1]

    def describe(self) -> dict[str, Any]:
        """Components, package versions and settings, for podsep's manifest."""
        return {
            "kind": "embedded",
            "name": "podsep-embedded",
            "voice_activity": {"model": "Silero VAD (silero_vad.jit)", "package": _version("silero-vad")},
            "speaker_embedding": {"model": "GE2E LSTM (resemblyzer/pretrained.pt)", "package": _version("resemblyzer")},
            "clustering": "one-voice test against a population mean, else average-linkage count estimate + spherical k-means",
            "overlap": overlap_turns.status(self.settings.overlap),
            "torch": _version("torch"),
            "device": self.device,
            "settings": {
                "vad": asdict(self.vad_settings),
                "clustering": asdict(self.cluster_settings),
                "segmentation": asdict(self.settings),
            },
        }

    # -- steps --------------------------------------------------------------------
    def _window_spans(self, regions: list[tuple[float, float]], duration: float) -> np.ndarray:
        """(n, 2) window start/end in seconds: sliding windows inside each speech
        region; a region shorter than a window gets one window centred on it."""
        window, hop = self.settings.window, self.settings.hop
        spans: list[tuple[float, float]] = []
        for start, end in regions:
            if end - start <= window:
                centre = (start + end) / 2
                begin = min(max(0.0, centre - window / 2), max(0.0, duration - window))
                spans.append((begin, min(duration, begin + window)))
                continue
            count = int(np.ceil((end - start - window) / hop)) + 1
            for index in range(count):
                begin = min(start + index * hop, end - window)
                spans.append((begin, begin + window))
        return np.array(spans, dtype=np.float64)

    def _window_embeddings(self, audio: np.ndarray, regions: list[tuple[float, float]],
                           report: Hook) -> tuple[np.ndarray, np.ndarray]:
        """Window spans over the speech ``regions`` and their raw embeddings."""
        spans = self._window_spans(regions, audio.size / SAMPLE_RATE)
        return spans, self._embed_spans(audio, regions, spans, report)

    def _embed_spans(self, audio: np.ndarray, regions: list[tuple[float, float]], spans: np.ndarray, report: Hook) -> np.ndarray:
        speech = np.zeros(audio.size, dtype=bool)
        for start, end in regions:
            speech[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)] = True
        mels = self.encoder.mel(normalise_level(audio, active=speech))
        frames = int(round(self.settings.window / MEL_FRAME_SECONDS))
        padded = np.pad(mels, ((0, frames), (0, 0)))
        windows = np.stack([padded[int(round(s / MEL_FRAME_SECONDS)) :][:frames] for s, _ in spans])
        out = []
        batch = 64
        for begin in range(0, len(windows), batch):
            out.append(self.encoder.embed_mels(windows[begin : begin + batch]))
            report("embeddings", None, completed=min(begin + batch, len(windows)), total=len(windows))
        return np.concatenate(out)

    def _resegment(
        self,
        regions: list[tuple[float, float]],
        spans: np.ndarray,
        embeddings: np.ndarray,
        centroids: np.ndarray,
        duration: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-step speaker label (-1 = no speech) and per-step speaker scores.

        A step's score for a speaker is the mean cosine similarity to that
        speaker's centroid of the windows covering the step, then smoothed in
        time; steps not covered by any window borrow the nearest window.
        """
        step = self.settings.step
        count = int(np.ceil(duration / step))
        sims = embeddings @ centroids.T  # (windows, speakers)
        total = np.zeros((count, len(centroids)))
        weight = np.zeros(count)
        for (start, end), row in zip(spans, sims):
            a, b = int(start / step), min(count, int(np.ceil(end / step)))
            total[a:b] += row
            weight[a:b] += 1
        covered = weight > 0
        scores = np.zeros_like(total)
        scores[covered] = total[covered] / weight[covered, None]
        if not covered.all() and covered.any():
            index = np.flatnonzero(covered)
            nearest = index[np.clip(np.searchsorted(index, np.arange(count)), 0, len(index) - 1)]
            scores[~covered] = scores[nearest[~covered]]
        width = max(1, int(round(self.settings.smoothing / step)))
        if width > 1:
            kernel = np.ones(width) / width
            scores = np.stack([np.convolve(scores[:, j], kernel, mode="same") for j in range(scores.shape[1])], axis=1)
        labels = np.full(count, -1, dtype=int)
        speech = np.zeros(count, dtype=bool)
        for start, end in regions:
            speech[int(round(start / step)) : int(round(end / step))] = True
        labels[speech] = np.argmax(scores[speech], axis=1)
        labels = _absorb_short_islands(labels, scores, int(round(self.settings.min_turn / step)))
        return labels, scores


def embed_clips(encoder: GE2EEncoder, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """(n, 256) unit GE2E embeddings of mono clips at any rate (zero rows for silent clips)."""
    rows = [encoder.embed_clip(to_mono_16k(w, sample_rate)) for w in waveforms]
    return np.stack(rows) if rows else np.zeros((0, 256), dtype=np.float32)


class VoiceEmbedder:
    """The embedded diarizer's voice embeddings alone (no VAD, no clustering).

    When the turns come from the user (an RTTM, reference turns), nothing else
    would tell podsep *whose voice* a separated source carries; this gives
    assignment that evidence, and voice profiles their matching, at the cost
    of one small LSTM.
    """

    voice_space = "ge2e"  # the same space as EmbeddedDiarizer.embed

    def __init__(self, device: str = "cpu") -> None:
        self.encoder = GE2EEncoder(device)

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """(n, 256) L2-normalised embeddings, as :meth:`EmbeddedDiarizer.embed`."""
        return embed_clips(self.encoder, waveforms, sample_rate)

    def describe(self) -> dict[str, Any]:
        """What embeds the voices (for the manifest)."""
        return {"kind": "podsep.embedded.VoiceEmbedder", "weights": "resemblyzer/pretrained.pt (GE2E)"}


def to_mono_16k(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Float32 mono at 16 kHz; a (channels, samples) array is averaged."""
    audio = np.asarray(waveform, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0 if audio.shape[0] <= audio.shape[1] else 1)
    if audio.ndim != 1:
        raise InputError(f"expected a mono waveform, got an array of shape {audio.shape}")
    if sample_rate <= 0:
        raise InputError(f"invalid sample rate {sample_rate}")
    if not np.all(np.isfinite(audio)):
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate != SAMPLE_RATE and audio.size:
        import torch
        import torchaudio.functional as AF

        audio = AF.resample(torch.from_numpy(audio), int(sample_rate), SAMPLE_RATE).numpy()
    return np.ascontiguousarray(audio, dtype=np.float32)


def _check_counts(num: int | None, low: int | None, high: int | None) -> None:
    for name, value in (("num_speakers", num), ("min_speakers", low), ("max_speakers", high)):
        if value is not None and value < 0:
            raise InputError(f"{name} must not be negative (got {value})")
    if low is not None and high is not None and low > high:
        raise InputError(f"min_speakers ({low}) is larger than max_speakers ({high})")


def _absorb_short_islands(labels: np.ndarray, scores: np.ndarray, min_steps: int) -> np.ndarray:
    """Relabel speaker runs shorter than ``min_steps`` that touch another speaker.

    Such a run goes to whichever neighbouring speaker scores better over it;
    runs bounded by silence on both sides are real (short) turns and stay.
    Each pass handles the shortest islands first and leaves islands next to
    a changed one for the next pass, so merges never chain within a pass.
    """
    labels = labels.copy()
    if min_steps <= 1:
        return labels
    while True:
        runs = _runs(labels)
        candidates = []
        for index, (start, end, label) in enumerate(runs):
            if label < 0 or end - start >= min_steps:
                continue
            neighbours = {runs[j][2] for j in (index - 1, index + 1) if 0 <= j < len(runs) and runs[j][2] >= 0}
            if neighbours:
                candidates.append((end - start, index, neighbours))
        if not candidates:
            return labels
        touched: set[int] = set()
        for _, index, neighbours in sorted(candidates, key=lambda c: (c[0], c[1])):
            if index in touched:
                continue
            start, end, _label = runs[index]
            best = max(sorted(neighbours), key=lambda s: float(scores[start:end, s].sum()))
            labels[start:end] = best
            touched.update((index - 1, index, index + 1))


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, label) for each run of equal labels."""
    if labels.size == 0:
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [labels.size]])
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]


def _labels_to_turns(labels: np.ndarray, step: float, speakers: list[str], duration: float) -> list[tuple[float, float, str]]:
    return [
        (start * step, min(duration, end * step), speakers[label])
        for start, end, label in _runs(labels)
        if label >= 0
    ]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
