"""``podsep.split``: the whole job, stage by stage, data flowing one way.

decode → diarize → find overlaps → separate windows → assign sources →
assemble tracks → export. The library prints nothing: progress goes to an
optional ``hook(step_name, artifact, completed=, total=)`` callable (the CLI
renders it with rich), problems that do not stop the run go into the manifest's
``warnings``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .assembly import ORIGINAL, SEPARATED, SeparatedSpan, Segment, plan_track, render
from .assignment import WindowAssignment, assign_window
from .audio import ANALYSIS_RATE, Audio, analysis_copy, load_audio, resample
from .config import Settings, load_settings
from .diarization import Diarization, to_samples
from .diarizers import Diarizer, PyannoteDiarizer, ReferenceDiarizer
from .errors import InputError, PodsepError
from .export import check_destination, result_folder, write_result
from .models import hub_token, pick_device
from .overlaps import OverlapRegion, Window, find_overlap_regions, plan_windows
from .separation import SepformerSeparator, Separator, run_separator

ProgressHook = Callable[..., Any]
SILENCE_PEAK = 1e-5  # -100 dBFS: below this the input is treated as digital silence


@dataclass
class SplitResult:
    """What :func:`split` returns.

    ``tracks`` maps speaker names to float32 ``(channels, num_samples)`` arrays
    at ``sample_rate``: exactly the input's length, rate and channel count.
    """

    tracks: dict[str, np.ndarray]
    sample_rate: int
    diarization: Diarization
    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def speakers(self) -> list[str]:
        return list(self.tracks)


def split(
    audio: str | os.PathLike[str] | np.ndarray | Audio,
    *,
    sample_rate: int | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    names: Sequence[str] | None = None,
    diarization: str | os.PathLike[str] | Diarization | None = None,
    diarizer: Diarizer | None = None,
    separator: Separator | None = None,
    config: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    overrides: dict[str, Any] | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    device: str | None = None,
    hf_token: str | None = None,
    overwrite: bool = False,
    hook: ProgressHook | None = None,
) -> SplitResult:
    """Split a recording into one full-length track per speaker.

    ``audio`` is a path (anything ffmpeg decodes) or an in-memory waveform (1-D
    or ``(channels, frames)``, with ``sample_rate``). ``diarization`` may be a
    ready-made :class:`Diarization` or an RTTM path (``file.rttm`` or
    ``file.rttm:URI``); otherwise ``diarizer`` or the configured pyannote pipeline
    runs. ``separator`` replaces the configured SepFormer. With ``output_dir`` the
    tracks, RTTM and JSON manifest are written to ``output_dir/<stem>/``.
    """
    clock = _StageClock(hook)
    extra = dict(overrides or {})
    for key, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None:
            extra[f"diarization.{key}"] = value
    if device is not None:
        extra["device"] = device
    settings = settings.validate() if settings is not None else load_settings(config, extra)
    warnings: list[str] = []

    stem, source_label = _describe_input(audio)
    folder = result_folder(output_dir, stem) if output_dir is not None else None
    if folder is not None:
        check_destination(folder, overwrite)

    # 1. decode ------------------------------------------------------------------
    clock.start("decode")
    original = _decode(audio, sample_rate)
    if float(np.max(np.abs(original.samples))) < SILENCE_PEAK:
        raise InputError(f"input is silent (no sample above -100 dBFS): {source_label}")
    analysis = analysis_copy(original, ANALYSIS_RATE)
    clock.stop()

    # 2. diarize -----------------------------------------------------------------
    clock.start("diarization")
    run_device = pick_device(settings.device)
    active_diarizer = _choose_diarizer(diarization, diarizer, settings, run_device, hf_token)
    found = active_diarizer(
        analysis, ANALYSIS_RATE,
        num_speakers=settings.diarization.num_speakers,
        min_speakers=settings.diarization.min_speakers,
        max_speakers=settings.diarization.max_speakers,
        hook=hook,
    ).crop(original.duration)
    if not found.turns:
        raise InputError(f"no speech found in {source_label}")
    labels = found.speakers
    naming = _name_speakers(labels, names, warnings)
    found = found.rename(naming)
    speakers = [naming[label] for label in labels]
    clock.stop(found)

    # 3. overlaps ----------------------------------------------------------------
    clock.start("overlaps")
    regions = find_overlap_regions(found, min_duration=settings.overlaps.min_duration, merge_gap=settings.overlaps.merge_gap)
    windows: list[Window] = []
    if settings.overlaps.policy == "separate":
        windows = [
            w for w in plan_windows(
                regions, found, original.duration, context=settings.overlaps.context,
                max_window=settings.overlaps.max_window, chunk_overlap=settings.overlaps.chunk_overlap,
            )
            if len(w.speakers) >= 2
        ]
    clock.stop(regions)

    # 4. separate ----------------------------------------------------------------
    clock.start("separation")
    rate = original.sample_rate
    mono = original.mono()
    bounds = [(to_samples(w.start, rate, original.num_frames), to_samples(w.end, rate, original.num_frames)) for w in windows]
    separated: list[np.ndarray] = []
    active_separator: Any = None
    if windows:
        active_separator = separator if separator is not None else SepformerSeparator(
            settings.separation.model, revision=settings.separation.revision, device=run_device,
            token=hub_token(hf_token), cache_dir=settings.cache_dir, batch_size=settings.separation.batch_size,
        ).load()
        separated = run_separator(
            active_separator, [mono[a:b] for a, b in bounds], rate,
            batch_size=settings.separation.batch_size, hook=hook,
        )
    clock.stop()

    # 5. assign ------------------------------------------------------------------
    clock.start("assignment")
    assignments = _assign_all(windows, bounds, separated, original, found, speakers, active_diarizer, analysis, settings, warnings, hook)
    clock.stop()

    # 6. assemble ----------------------------------------------------------------
    clock.start("assembly")
    tracks = _assemble(original, found, speakers, windows, bounds, assignments, settings, hook)
    clock.stop()

    manifest = _manifest(
        source_label, original, found, speakers, regions, windows, assignments, settings,
        active_diarizer, active_separator, clock.timings, warnings,
    )
    files: dict[str, Path] = {}
    if folder is not None:
        clock.start("export")
        files = write_result(
            folder, stem, tracks, original.sample_rate, found.to_rttm(stem), manifest,
            fmt=settings.output.format, bit_depth=settings.output.bit_depth, overwrite=overwrite,
        )
        clock.stop()
        manifest["timings"] = clock.timings
    result = SplitResult(tracks, original.sample_rate, found, manifest, files)
    if hook:
        hook("done", result, completed=1, total=1)
    return result


# -- stages' helpers -------------------------------------------------------------

def _describe_input(audio: Any) -> tuple[str, str]:
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        return path.stem or "audio", str(path)
    return "audio", "<waveform>"


def _decode(audio: Any, sample_rate: int | None) -> Audio:
    if isinstance(audio, Audio):
        return Audio.from_array(audio.samples, audio.sample_rate)
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio)
    if sample_rate is None:
        raise InputError("an in-memory waveform needs its sample_rate")
    return Audio.from_array(audio, sample_rate)


def _choose_diarizer(
    diarization: Any, diarizer: Diarizer | None, settings: Settings, device: str, hf_token: str | None
) -> Diarizer:
    if diarization is not None:
        if isinstance(diarization, Diarization):
            return ReferenceDiarizer(diarization, "given", embedder=diarizer)
        text = str(diarization)
        path, uri = Path(text), None
        if not path.exists() and ":" in text:
            head, _, tail = text.rpartition(":")
            path, uri = Path(head), tail
        if not path.is_file():
            raise InputError(f"diarization file not found: {text}")
        return ReferenceDiarizer(Diarization.from_rttm(path, uri), str(path), embedder=diarizer)
    if diarizer is not None:
        return diarizer
    return PyannoteDiarizer(
        settings.diarization.model, revision=settings.diarization.revision, token=hub_token(hf_token),
        cache_dir=settings.cache_dir, device=device,
    ).load()


def _name_speakers(labels: list[str], names: Sequence[str] | None, warnings: list[str]) -> dict[str, str]:
    """Map diarizer labels (in order of first speech) to the user's names."""
    names = [n.strip() for n in (names or []) if n and n.strip()]
    if len(set(names)) != len(names):
        raise PodsepError(f"speaker names must be distinct: {', '.join(names)}")
    if names and len(names) != len(labels):
        warnings.append(
            f"{len(names)} name(s) given for {len(labels)} speaker(s) found; "
            f"names are given in order of first speech, the rest keep their labels"
        )
    mapping = {label: (names[i] if i < len(names) else label) for i, label in enumerate(labels)}
    if len(set(mapping.values())) != len(mapping):
        raise PodsepError("a given speaker name clashes with a diarizer label; choose other names")
    return mapping


def _reference_embeddings(
    diarizer: Diarizer, analysis: np.ndarray, diarization: Diarization, speakers: list[str], seconds: float
) -> dict[str, np.ndarray]:
    """Each speaker's voice from their longest solo turns (up to ``seconds``)."""
    activity = diarization.activity(ANALYSIS_RATE, len(analysis), speakers)
    alone = activity & (activity.sum(axis=0) == 1)
    clips, owners = [], []
    for row, speaker in enumerate(speakers):
        runs = _true_runs(alone[row])
        runs.sort(key=lambda run: run[1] - run[0], reverse=True)
        budget = int(seconds * ANALYSIS_RATE)
        for start, end in runs:
            if budget <= 0 or end - start < ANALYSIS_RATE // 2:
                break
            end = min(end, start + budget)
            clips.append(analysis[start:end])
            owners.append(speaker)
            budget -= end - start
    if not clips:
        return {}
    vectors = diarizer.embed(clips, ANALYSIS_RATE)
    if vectors is None:
        return {}
    references = {}
    for speaker in speakers:
        rows = [i for i, owner in enumerate(owners) if owner == speaker]
        if rows:
            mean = np.mean(vectors[rows], axis=0)
            references[speaker] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return references


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _assign_all(
    windows: list[Window],
    bounds: list[tuple[int, int]],
    separated: list[np.ndarray],
    original: Audio,
    diarization: Diarization,
    speakers: list[str],
    diarizer: Diarizer,
    analysis: np.ndarray,
    settings: Settings,
    warnings: list[str],
    hook: ProgressHook | None,
) -> list[WindowAssignment]:
    if not windows:
        return []
    rate = original.sample_rate
    references: dict[str, np.ndarray] = {}
    source_embeddings: list[np.ndarray | None] = [None] * len(windows)
    if settings.assignment.embedding_weight > 0:
        references = _reference_embeddings(diarizer, analysis, diarization, speakers, settings.assignment.reference_speech)
        if references:
            for index, sources in enumerate(separated):
                vectors = diarizer.embed([resample(s, rate, ANALYSIS_RATE) for s in sources], ANALYSIS_RATE)
                source_embeddings[index] = vectors
    results: list[WindowAssignment] = []
    previous_by_region: dict[int, tuple[WindowAssignment, int, int]] = {}
    for index, (window, (start, end), sources) in enumerate(zip(windows, bounds, separated)):
        activity = _activity_between(diarization, speakers, rate, start, end)
        previous = None
        span = None
        if window.region in previous_by_region:
            earlier, earlier_start, earlier_end = previous_by_region[window.region]
            shared_start, shared_end = max(start, earlier_start), min(end, earlier_end)
            if shared_end > shared_start:
                span = (shared_start - start, shared_end - start)
                previous = {
                    s: earlier.sources[s].mean(axis=0)[shared_start - earlier_start:shared_end - earlier_start]
                    for s in earlier.sources
                }
        outcome = assign_window(
            original.samples[:, start:end], sources, activity, speakers, window.speakers, rate,
            min_context=settings.assignment.min_context,
            source_embeddings=source_embeddings[index], reference_embeddings=references,
            embedding_weight=settings.assignment.embedding_weight,
            previous=previous, previous_span=span, continuity_weight=settings.assignment.continuity_weight,
        )
        if outcome.unassigned_speakers:
            warnings.append(
                f"{window.core_start:.2f}-{window.core_end:.2f} s: {len(window.speakers)} speakers at once; "
                f"separated the two most active, {', '.join(outcome.unassigned_speakers)} left as the mixture"
            )
        results.append(outcome)
        previous_by_region[window.region] = (outcome, start, end)
        if hook:
            hook("assignment", None, completed=index + 1, total=len(windows))
    return results


def _activity_between(diarization: Diarization, speakers: list[str], rate: int, start: int, end: int) -> np.ndarray:
    mask = np.zeros((len(speakers), end - start), dtype=bool)
    row = {label: i for i, label in enumerate(speakers)}
    for turn in diarization.turns:
        a, b = to_samples(turn.start, rate) - start, to_samples(turn.end, rate) - start
        if b > 0 and a < end - start:
            mask[row[turn.speaker], max(a, 0):min(b, end - start)] = True
    return mask


def _assemble(
    original: Audio,
    diarization: Diarization,
    speakers: list[str],
    windows: list[Window],
    bounds: list[tuple[int, int]],
    assignments: list[WindowAssignment],
    settings: Settings,
    hook: ProgressHook | None,
) -> dict[str, np.ndarray]:
    rate, length = original.sample_rate, original.num_frames
    activity = diarization.activity(rate, length, speakers)
    spans = [
        SeparatedSpan(w.index, a, b, to_samples(w.core_start, rate, length), to_samples(w.core_end, rate, length))
        for w, (a, b) in zip(windows, bounds)
    ]
    # Windows were filtered; index spans by position so that plan and reader agree.
    spans = [SeparatedSpan(i, s.start, s.end, s.core_start, s.core_end) for i, s in enumerate(spans)]
    row_of = {s: i for i, s in enumerate(speakers)}
    assigned = {i: {row_of[s] for s in outcome.sources} for i, outcome in enumerate(assignments)}
    fade = int(round(settings.assembly.crossfade * rate))
    tracks: dict[str, np.ndarray] = {}
    for row, speaker in enumerate(speakers):
        plan = plan_track(row, activity, spans, assigned, overlap_policy=settings.overlaps.policy, fade=fade, speaker=speaker)

        def read(segment: Segment, a: int, b: int, speaker: str = speaker) -> np.ndarray:
            if segment.kind == ORIGINAL:
                return original.samples[:, a:b]
            if segment.kind == SEPARATED:
                span = spans[segment.window]
                return assignments[segment.window].sources[speaker][:, a - span.start:b - span.start]
            raise AssertionError(segment.kind)

        tracks[speaker] = render(plan, 0, length, read, original.num_channels, settings.assembly.crossfade_law)
        if hook:
            hook("assembly", None, completed=row + 1, total=len(speakers))
    return tracks


def _manifest(
    source: str,
    original: Audio,
    diarization: Diarization,
    speakers: list[str],
    regions: list[OverlapRegion],
    windows: list[Window],
    assignments: list[WindowAssignment],
    settings: Settings,
    diarizer: Any,
    separator: Any,
    timings: dict[str, float],
    warnings: list[str],
) -> dict[str, Any]:
    activity = diarization.activity(100, int(np.ceil(original.duration * 100)) + 1, speakers)  # 10 ms grid
    alone = activity & (activity.sum(axis=0) == 1)
    policy = settings.overlaps.policy
    by_region: dict[int, list[dict[str, Any]]] = {}
    for window, outcome in zip(windows, assignments):
        by_region.setdefault(window.region, []).append({
            "start": round(window.start, 3), "end": round(window.end, 3),
            "core_start": round(window.core_start, 3), "core_end": round(window.core_end, 3),
            "assignment": outcome.source_index,
            "confidence": round(outcome.confidence, 4),
            "evidence": outcome.evidence,
            "gain_db": {s: round(g, 2) for s, g in outcome.gains_db.items()},
            "left_as_mixture": list(outcome.unassigned_speakers),
        })
    overlaps = []
    for index, region in enumerate(regions):
        handled_windows = by_region.get(index, [])
        if policy == "separate":
            handling = "separated" if handled_windows else "mixture"
        else:
            handling = {"duplicate": "duplicated", "mute": "muted"}[policy]
        overlaps.append({
            "start": round(region.start, 3), "end": round(region.end, 3), "speakers": list(region.speakers),
            "handling": handling, "windows": handled_windows,
            "confidence": min((w["confidence"] for w in handled_windows), default=None),
        })
    describe = (lambda thing: thing.describe() if hasattr(thing, "describe") else {"kind": type(thing).__name__})
    return {
        "podsep_version": __version__,
        "input": {
            "source": source, "sample_rate": original.sample_rate, "channels": original.num_channels,
            "num_samples": original.num_frames, "duration": round(original.duration, 6),
            "sha256": _fingerprint(original) if source == "<waveform>" else _file_sha256(source),
        },
        "models": {
            "diarization": describe(diarizer),
            "separation": describe(separator) if separator is not None else None,
        },
        "parameters": settings.to_dict(),
        "speakers": [
            {
                "name": speaker,
                "talk_time": round(diarization.talk_time(speaker), 3),
                "solo_time": round(float(alone[row].sum()) / 100, 2),
                "overlap_time": round(float((activity[row] & ~alone[row]).sum()) / 100, 2),
            }
            for row, speaker in enumerate(speakers)
        ],
        "overlaps": overlaps,
        "timings": timings,
        "real_time_factor": round(sum(timings.values()) / max(original.duration, 1e-9), 4),
        "warnings": warnings,
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
    }


def _file_sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _fingerprint(audio: Audio) -> str:
    return hashlib.sha256(audio.samples.tobytes()).hexdigest()


class _StageClock:
    """Times stages and reports their start/end to the hook."""

    def __init__(self, hook: ProgressHook | None) -> None:
        self.hook = hook
        self.timings: dict[str, float] = {}
        self._name: str | None = None
        self._started = 0.0

    def start(self, name: str) -> None:
        self._name, self._started = name, time.perf_counter()
        if self.hook:
            self.hook(name, None, completed=0, total=None)

    def stop(self, artifact: Any = None) -> None:
        assert self._name is not None
        self.timings[self._name] = round(time.perf_counter() - self._started, 4)
        if self.hook:
            self.hook(self._name, artifact, completed=1, total=1)
        self._name = None
