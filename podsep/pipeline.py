"""``podsep.split``: the whole job, stage by stage, data flowing one way.

decode → diarize → find overlaps → separate and assign windows → assemble
tracks → export. The library prints nothing: progress goes to an optional
``hook(step_name, artifact, completed=, total=)`` callable (the CLI renders it
with rich), and problems that do not stop the run are reported once through
``hook("warning", message)`` and kept in the manifest's ``warnings``.

Memory stays bounded on long recordings: the original is read in blocks (never
held whole at its own rate), speaker activity is kept as interval sets, only the
separated windows are kept, and tracks are rendered and written block by block.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .assembly import ORIGINAL, SEPARATED, SeparatedSpan, Segment, TrackPlan, plan_track, render
from .assignment import WindowAssignment, assign_window
from .audio import ANALYSIS_RATE, Audio, FileAudio, open_audio, resample, stream_analysis_copy
from .chunked import ChunkedDiarizer
from .config import Settings, load_settings
from .diarization import Diarization, to_samples
from .diarizers import Diarizer, PyannoteDiarizer, ReferenceDiarizer
from .errors import InputError, ModelError, PodsepError
from .export import ResultStaging, check_destination, clipping_warning, result_folder
from .intervals import speaker_intervals, union_all
from .models import hub_token, pick_device, podsep_cache_root
from .overlaps import OverlapRegion, Window, find_overlap_regions, plan_windows
from .separation import SepformerSeparator, Separator, iter_separated
from .spill import SpillStore

ProgressHook = Callable[..., Any]
SILENCE_PEAK = 1e-5  # -100 dBFS: below this the input is treated as digital silence
BLOCK_SECONDS = 30.0  # assembly renders and writes this much audio at a time
IN_MEMORY_LIMIT = 512 * 1024 * 1024  # bytes of tracks kept as arrays when also written to disk


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
    """What :func:`split` returns.

    ``tracks`` maps speaker names to float32 ``(channels, num_samples)`` arrays
    at ``sample_rate``: exactly the input's length, rate and channel count.
    """

    tracks: Mapping[str, np.ndarray]
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
    ``file.rttm:URI``); otherwise ``diarizer`` or the configured backend runs.
    ``separator`` replaces the configured SepFormer. With ``output_dir`` the
    tracks, RTTM and JSON manifest are written to ``output_dir/<stem>/``.
    """
    extra = dict(overrides or {})
    for key, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None:
            extra[f"diarization.{key}"] = value
    if device is not None:
        extra["device"] = device
    settings = settings.with_overrides(extra) if settings is not None else load_settings(config, extra)
    stem, label = _describe_input(audio)
    folder = result_folder(output_dir, stem) if output_dir is not None else None
    if folder is not None:
        check_destination(folder, overwrite)
    run = _Run(settings, hook)
    source = _open(audio, sample_rate)
    try:
        return _split_source(source, label, stem, folder, run, names=names, diarization=diarization,
                             diarizer=diarizer, separator=separator, hf_token=hf_token, overwrite=overwrite)
    finally:
        source.close()


@dataclass
class _Run:
    """State shared by the stages of one run: settings, timings, warnings, the hook."""

    settings: Settings
    hook: ProgressHook | None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def report(self, step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None) -> None:
        if self.hook:
            self.hook(step, artifact, completed=completed, total=total)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.report("warning", message)

    def stage(self, name: str) -> "_Stage":
        return _Stage(self, name)


class _Stage:
    def __init__(self, run: _Run, name: str) -> None:
        self.run, self.name = run, name

    def __enter__(self) -> "_Stage":
        self.started = time.perf_counter()
        self.run.report(self.name, None, completed=0, total=None)
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        elapsed = time.perf_counter() - self.started
        self.run.timings[self.name] = round(self.run.timings.get(self.name, 0.0) + elapsed, 4)
        if kind is None:
            self.run.report(self.name, None, completed=1, total=1)


def _split_source(
    source: Audio | FileAudio,
    label: str,
    stem: str,
    folder: Path | None,
    run: _Run,
    *,
    names: Sequence[str] | None,
    diarization: Any,
    diarizer: Diarizer | None,
    separator: Separator | None,
    hf_token: str | None,
    overwrite: bool,
) -> SplitResult:
    settings = run.settings
    rate, length, channels = source.sample_rate, source.num_frames, source.num_channels

    with run.stage("decode"):
        analysis, peak = stream_analysis_copy(source, ANALYSIS_RATE)
        if peak < SILENCE_PEAK:
            raise InputError(f"input is silent (no sample above -100 dBFS): {label}")
        fingerprint = _fingerprint(source, label)

    with run.stage("diarization"):
        run_device = pick_device(settings.device)
        active_diarizer = _choose_diarizer(diarization, diarizer, run, run_device, hf_token)
        found = _diarize(active_diarizer, analysis, fingerprint, run).crop(source.duration)
        if not found.turns:
            raise InputError(f"no speech found in {label}")
        naming = _name_speakers(found.speakers, names, run)
        speakers = [naming[s] for s in found.speakers]
        found = found.rename(naming)

    with run.stage("overlaps"):
        regions = find_overlap_regions(found, min_duration=settings.overlaps.min_duration,
                                       merge_gap=settings.overlaps.merge_gap)
        windows: list[Window] = []
        if settings.overlaps.policy == "separate":
            planned = plan_windows(regions, found, source.duration, context=settings.overlaps.context,
                                   max_window=settings.overlaps.max_window, chunk_overlap=settings.overlaps.chunk_overlap)
            windows = [w for w in planned if len(w.speakers) >= 2]
        bounds = [(to_samples(w.start, rate, length), to_samples(w.end, rate, length)) for w in windows]

    active_separator: Any = None
    assignments: list[WindowAssignment] = []
    with SpillStore() as spill:  # separated audio past a memory budget waits on disk for assembly
        if windows:
            active_separator = separator if separator is not None else _load_separator(run, run_device, hf_token)
            if active_separator is None:
                windows, bounds = [], []
            else:
                assignments = _separate_and_assign(source, windows, bounds, found, speakers, active_diarizer,
                                                   analysis, active_separator, run, spill)

        with run.stage("assembly"):
            plans = _plan_tracks(found, speakers, windows, bounds, assignments, rate, length, settings)
            staging = ResultStaging(folder, stem, overwrite=overwrite) if folder is not None else None
            keep = staging is None or length * channels * len(speakers) * 4 <= IN_MEMORY_LIMIT
            try:
                arrays, clipped = _render_tracks(source, plans, windows, bounds, assignments, settings, run,
                                                 staging, keep)
            except BaseException:
                if staging is not None:
                    staging.abort()
                raise
            if clipped:
                run.warn(clipping_warning(clipped))

    manifest = _manifest(label, fingerprint, source, found, speakers, regions, windows, assignments, settings,
                         active_diarizer, active_separator, run)
    files: dict[str, Path] = {}
    if staging is not None:
        with run.stage("export"):
            files = staging.finish(found.to_rttm(stem), manifest)
        manifest["timings"] = dict(run.timings)
    tracks = Tracks(arrays if keep else None, {s: files[f"track:{s}"] for s in speakers} if not keep else None)
    result = SplitResult(tracks, rate, found, manifest, files)
    run.report("done", result, completed=1, total=1)
    return result


# -- inputs ---------------------------------------------------------------------------

def _describe_input(audio: Any) -> tuple[str, str]:
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        return path.stem or "audio", str(path)
    return "audio", "<waveform>"


def _open(audio: Any, sample_rate: int | None) -> Audio | FileAudio:
    if isinstance(audio, Audio):
        return Audio.from_array(audio.samples, audio.sample_rate)
    if isinstance(audio, (str, os.PathLike)):
        return open_audio(audio)
    if sample_rate is None:
        raise InputError("an in-memory waveform needs its sample_rate")
    return Audio.from_array(audio, sample_rate)


def _fingerprint(source: Audio | FileAudio, label: str) -> str:
    """SHA-256 of the input file (or of the samples of an in-memory waveform)."""
    digest = hashlib.sha256()
    if isinstance(source, FileAudio) and not source.temporary:
        path = source.path
    elif isinstance(source, FileAudio):
        path = Path(label)
    else:
        digest.update(np.ascontiguousarray(source.samples).tobytes())
        digest.update(str(source.sample_rate).encode())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# -- diarization ------------------------------------------------------------------------

def _choose_diarizer(diarization: Any, diarizer: Diarizer | None, run: _Run, device: str,
                     hf_token: str | None) -> Diarizer:
    settings = run.settings
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
    return _chunked(_backend_diarizer(run, device, hf_token), settings)


def _chunked(diarizer: Diarizer, settings: Settings) -> Diarizer:
    if settings.diarization.chunk_minutes <= 0:
        return diarizer
    return ChunkedDiarizer(diarizer, settings.diarization.chunk_minutes * 60.0,
                           link_threshold=settings.diarization.link_threshold)


def _backend_diarizer(run: _Run, device: str, hf_token: str | None) -> Diarizer:
    settings = run.settings
    backend = settings.diarization.backend
    if backend in ("pyannote", "auto"):
        pyannote = PyannoteDiarizer(settings.diarization.model, revision=settings.diarization.revision,
                                    token=hub_token(hf_token), cache_dir=settings.cache_dir, device=device)
        try:
            return pyannote.load()
        except ModelError as error:
            if backend == "pyannote":
                raise
            run.warn(f"{error}; falling back to the embedded diarizer (no download, lower accuracy)")
            run.notes["diarization_fallback"] = str(error)
    return _embedded_diarizer(device)


def _embedded_diarizer(device: str) -> Diarizer:
    try:
        from .embedded import EmbeddedDiarizer
    except ImportError as error:  # pragma: no cover - packaging problem
        raise ModelError(f"the embedded diarizer is not installed: {error}") from error
    return EmbeddedDiarizer(device="cpu" if device.startswith("mps") else device)


def _diarize(diarizer: Diarizer, analysis: np.ndarray, fingerprint: str, run: _Run) -> Diarization:
    """Run the diarizer, or reuse the cached result of the same input and settings."""
    settings = run.settings.diarization
    cacheable = not isinstance(diarizer, ReferenceDiarizer) and settings.cache
    entry = None
    if cacheable:
        describe = diarizer.describe() if hasattr(diarizer, "describe") else {"kind": type(diarizer).__name__}
        identity = {"input": fingerprint, "diarizer": describe, "num": settings.num_speakers,
                    "min": settings.min_speakers, "max": settings.max_speakers, "version": __version__}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]
        entry = podsep_cache_root() / "diarization" / f"{key}.rttm"
        if entry.is_file():
            try:
                result = Diarization.from_rttm(entry)
                run.notes["diarization_cache"] = "reused"
                return result
            except PodsepError:
                pass  # a damaged cache entry is simply recomputed
    def substep(step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None,
                **_: Any) -> None:
        run.report(f"diarization/{step}", None, completed=completed, total=total)

    raw = diarizer(
        analysis, ANALYSIS_RATE, num_speakers=settings.num_speakers, min_speakers=settings.min_speakers,
        max_speakers=settings.max_speakers, hook=substep,
    )
    # Millisecond resolution, as in the RTTM written and cached: a rerun gives exactly the same turns.
    result = Diarization.from_turns([(round(t.start, 3), round(t.end, 3), t.speaker) for t in raw.turns], raw.uri)
    if entry is not None and result.turns:
        _store_cache(entry, result.to_rttm("cached"))
        run.notes["diarization_cache"] = "stored"
    return result


def _store_cache(path: Path, text: str) -> None:
    """Write a cache entry atomically; a cache that cannot be written is not an error."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".entry-")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except OSError:
        pass


def _name_speakers(labels: list[str], names: Sequence[str] | None, run: _Run) -> dict[str, str]:
    """Map diarizer labels (in order of first speech) to the user's names."""
    names = [n.strip() for n in (names or []) if n and n.strip()]
    if len(set(names)) != len(names):
        raise PodsepError(f"speaker names must be distinct: {', '.join(names)}")
    if names and len(names) != len(labels):
        run.warn(f"{len(names)} name(s) given for {len(labels)} speaker(s) found; "
                 "names are given in order of first speech, the rest keep their labels")
    mapping = {label: (names[i] if i < len(names) else label) for i, label in enumerate(labels)}
    if len(set(mapping.values())) != len(mapping):
        raise PodsepError("a given speaker name clashes with a diarizer label; choose other names")
    return mapping


# -- separation and assignment ----------------------------------------------------------------

def _load_separator(run: _Run, device: str, hf_token: str | None) -> Any:
    settings = run.settings
    candidate = SepformerSeparator(settings.separation.model, revision=settings.separation.revision, device=device,
                                   token=hub_token(hf_token), cache_dir=settings.cache_dir,
                                   batch_size=settings.separation.batch_size)
    try:
        return candidate.load()
    except ModelError as error:
        fallback = settings.overlaps.fallback
        if fallback == "error":
            raise
        run.warn(f"{error}; overlaps are {'copied into every active track' if fallback == 'duplicate' else 'muted'} "
                 f"instead (overlaps.fallback: {fallback})")
        run.notes["separation_fallback"] = {"reason": str(error), "policy": fallback}
        run.settings = settings.with_overrides({"overlaps.policy": fallback})
        return None


def _separate_and_assign(
    source: Audio | FileAudio,
    windows: list[Window],
    bounds: list[tuple[int, int]],
    diarization: Diarization,
    speakers: list[str],
    diarizer: Diarizer,
    analysis: np.ndarray,
    separator: Any,
    run: _Run,
    spill: SpillStore,
) -> list[WindowAssignment]:
    """Separate each window and assign its sources at once, keeping only what assembly needs.

    A window is final once trimmed for the last time (after its successor
    chunk has read the audio they share); final windows go to ``spill``.
    """
    settings = run.settings
    rate = source.sample_rate
    references: dict[str, np.ndarray] = {}
    with run.stage("separation"):
        if settings.assignment.embedding_weight > 0:
            references = _reference_embeddings(diarizer, analysis, diarization, speakers,
                                               settings.assignment.reference_speech)
        active = speaker_intervals([(t.start, t.end, t.speaker) for t in diarization.turns], speakers, rate,
                                   source.num_frames)
        results: list[WindowAssignment | None] = [None] * len(windows)
        previous_by_region: dict[int, int] = {}
        assign_seconds = 0.0
        stream = iter_separated(
            separator, lambda i: source.read(*bounds[i]).mean(axis=0, dtype=np.float64).astype(np.float32),
            [b - a for a, b in bounds], rate, batch_size=settings.separation.batch_size, warn=run.warn,
        )
        run.report("separation", None, completed=0, total=len(windows))
        for done, (index, sources) in enumerate(stream, start=1):
            started = time.perf_counter()
            window, (start, end) = windows[index], bounds[index]
            activity = np.stack([active[s].mask(start, end) for s in speakers])
            vectors = None
            if references:
                vectors = diarizer.embed([resample(s, rate, ANALYSIS_RATE) for s in sources], ANALYSIS_RATE)
            previous, span = None, None
            earlier_index = previous_by_region.get(window.region)
            if earlier_index is not None and results[earlier_index] is not None:
                earlier = results[earlier_index]
                earlier_start, earlier_end = bounds[earlier_index]
                shared_start, shared_end = max(start, earlier_start), min(end, earlier_end)
                if shared_end > shared_start:
                    span = (shared_start - start, shared_end - start)
                    previous = {s: earlier.source(s, shared_start - earlier_start, shared_end - earlier_start).mean(axis=0)
                                for s in earlier.mono_sources}
            outcome = assign_window(
                source.read(start, end), sources, activity, speakers, window.speakers, rate,
                min_context=settings.assignment.min_context, source_embeddings=vectors,
                reference_embeddings=references, embedding_weight=settings.assignment.embedding_weight,
                previous=previous, previous_span=span, continuity_weight=settings.assignment.continuity_weight,
            )
            if outcome.unassigned_speakers:
                run.warn(f"{window.core_start:.2f}-{window.core_end:.2f} s: {len(window.speakers)} speakers at once; "
                         f"separated the {len(outcome.source_index)} most active, "
                         f"{', '.join(outcome.unassigned_speakers)} left as the mixture")
            results[index] = outcome
            if earlier_index is not None and results[earlier_index] is not None:
                _trim_to_use(results[earlier_index], windows[earlier_index], bounds[earlier_index], rate,
                             settings, has_successor=False)
                spill.park(results[earlier_index].mono_sources)
            has_successor = window.chunk < window.num_chunks - 1
            _trim_to_use(outcome, window, bounds[index], rate, settings, has_successor=has_successor)
            if not has_successor:
                spill.park(outcome.mono_sources)
            previous_by_region[window.region] = index
            assign_seconds += time.perf_counter() - started
            run.report("separation", None, completed=done, total=len(windows))
    run.timings["separation"] = round(run.timings["separation"] - assign_seconds, 4)
    run.timings["assignment"] = round(assign_seconds, 4)
    return [r for r in results if r is not None]


def _trim_to_use(outcome: WindowAssignment, window: Window, bounds: tuple[int, int], rate: int, settings: Settings,
                 *, has_successor: bool) -> None:
    """Drop the parts of a window's sources that neither assembly nor the next chunk will read.

    Assembly reads a source inside its core and at most one crossfade beyond
    each core edge; the next chunk of a long region also compares the audio both
    windows share, so a chunk with a successor keeps its tail until then.
    """
    start, end = bounds
    margin = 2 * int(round(settings.assembly.crossfade * rate)) + 1
    keep_start = max(0, to_samples(window.core_start, rate) - start - margin)
    keep_end = end - start if has_successor else min(end - start, to_samples(window.core_end, rate) - start + margin)
    outcome.trim(keep_start, keep_end)


def _reference_embeddings(diarizer: Diarizer, analysis: np.ndarray, diarization: Diarization,
                          speakers: list[str], seconds: float) -> dict[str, np.ndarray]:
    """Each speaker's voice from their longest solo stretches (up to ``seconds``)."""
    if not hasattr(diarizer, "embed"):
        return {}
    active = speaker_intervals([(t.start, t.end, t.speaker) for t in diarization.turns], speakers,
                               ANALYSIS_RATE, len(analysis))
    clips, owners = [], []
    for speaker in speakers:
        others = union_all(active[s] for s in speakers if s != speaker)
        runs = sorted(active[speaker].subtract(others).pairs(), key=lambda r: r[1] - r[0], reverse=True)
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


# -- assembly -------------------------------------------------------------------------------

def _plan_tracks(diarization: Diarization, speakers: list[str], windows: list[Window],
                 bounds: list[tuple[int, int]], assignments: list[WindowAssignment], rate: int, length: int,
                 settings: Settings) -> dict[str, TrackPlan]:
    active = speaker_intervals([(t.start, t.end, t.speaker) for t in diarization.turns], speakers, rate, length)
    spans = [
        SeparatedSpan(i, a, b, to_samples(w.core_start, rate, length), to_samples(w.core_end, rate, length))
        for i, (w, (a, b)) in enumerate(zip(windows, bounds))
    ]
    fade = int(round(settings.assembly.crossfade * rate))
    plans = {}
    for speaker in speakers:
        others = union_all(active[s] for s in speakers if s != speaker)
        mine = {i for i, outcome in enumerate(assignments) if speaker in outcome.mono_sources}
        plans[speaker] = plan_track(active[speaker], others, spans, mine, length,
                                    overlap_policy=settings.overlaps.policy, fade=fade, speaker=speaker)
    return plans


def _render_tracks(source: Audio | FileAudio, plans: dict[str, TrackPlan], windows: list[Window],
                   bounds: list[tuple[int, int]], assignments: list[WindowAssignment], settings: Settings,
                   run: _Run, staging: ResultStaging | None, keep: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """Render every track block by block; stream into files and/or keep arrays."""
    rate, length, channels = source.sample_rate, source.num_frames, source.num_channels
    arrays = {s: np.zeros((channels, length), dtype=np.float32) for s in plans} if keep else {}
    writers = {}
    if staging is not None:
        for speaker in plans:
            writers[speaker] = staging.track_writer(speaker, rate, channels, fmt=settings.output.format,
                                                    bit_depth=settings.output.bit_depth)
    block = max(1, int(BLOCK_SECONDS * rate))
    total_blocks = max(1, -(-length // block))
    try:
        for number, start in enumerate(range(0, length, block), start=1):
            stop = min(length, start + block)
            original = source.read(start, stop)

            def read(segment: Segment, a: int, b: int, speaker: str) -> np.ndarray:
                if segment.kind == ORIGINAL:
                    if start <= a and b <= stop:
                        return original[:, a - start:b - start]
                    return source.read(a, b)
                if segment.kind == SEPARATED:
                    offset = bounds[segment.window][0]
                    return assignments[segment.window].source(speaker, a - offset, b - offset)
                raise AssertionError(segment.kind)

            for speaker, plan in plans.items():
                out = render(plan, start, stop, lambda seg, a, b, s=speaker: read(seg, a, b, s), channels,
                             settings.assembly.crossfade_law)
                if keep:
                    arrays[speaker][:, start:stop] = out
                if speaker in writers:
                    writers[speaker].write(out)
            run.report("assembly", None, completed=number, total=total_blocks)
        for writer in writers.values():
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    clipped = [s for s, w in writers.items() if w.clipped_samples]
    return arrays, clipped


# -- manifest -----------------------------------------------------------------------------------

def _manifest(label: str, fingerprint: str, source: Audio | FileAudio, diarization: Diarization,
              speakers: list[str], regions: list[OverlapRegion], windows: list[Window],
              assignments: list[WindowAssignment], settings: Settings, diarizer: Any, separator: Any,
              run: _Run) -> dict[str, Any]:
    grid = 100  # talk times on a 10 ms grid
    active = speaker_intervals([(t.start, t.end, t.speaker) for t in diarization.turns], speakers, grid,
                               int(np.ceil(source.duration * grid)) + 1)
    policy = run.settings.overlaps.policy
    by_region: dict[int, list[dict[str, Any]]] = {}
    for window, outcome in zip(windows, assignments):
        by_region.setdefault(window.region, []).append({
            "start": round(window.start, 3), "end": round(window.end, 3),
            "core_start": round(window.core_start, 3), "core_end": round(window.core_end, 3),
            "assignment": outcome.source_index,
            "confidence": round(outcome.confidence, 4),
            "evidence": outcome.evidence,
            "gain_db": {s: (round(g, 2) if np.isfinite(g) else None) for s, g in outcome.gains_db.items()},
            "left_as_mixture": list(outcome.unassigned_speakers),
        })
    overlaps = []
    for index, region in enumerate(regions):
        handled = by_region.get(index, [])
        if policy == "separate":
            handling = "separated" if handled else "mixture"
        else:
            handling = {"duplicate": "duplicated", "mute": "muted"}[policy]
        overlaps.append({
            "start": round(region.start, 3), "end": round(region.end, 3), "speakers": list(region.speakers),
            "handling": handling, "windows": handled,
            "confidence": min((w["confidence"] for w in handled), default=None),
        })

    def describe(thing: Any) -> Any:
        if thing is None:
            return None
        return thing.describe() if hasattr(thing, "describe") else {"kind": type(thing).__name__}

    speaker_rows = []
    for speaker in speakers:
        others = union_all(active[s] for s in speakers if s != speaker)
        speaker_rows.append({
            "name": speaker,
            "talk_time": round(diarization.talk_time(speaker), 3),
            "solo_time": round(active[speaker].subtract(others).total / grid, 2),
            "overlap_time": round(active[speaker].intersect(others).total / grid, 2),
        })
    return {
        "podsep_version": __version__,
        "input": {
            "source": label, "sample_rate": source.sample_rate, "channels": source.num_channels,
            "num_samples": source.num_frames, "duration": round(source.duration, 6), "sha256": fingerprint,
        },
        "models": {"diarization": describe(diarizer), "separation": describe(separator)},
        "fallbacks": {k: v for k, v in run.notes.items() if k.endswith("fallback")},
        "diarization_cache": run.notes.get("diarization_cache"),
        "parameters": settings.to_dict(),
        "speakers": speaker_rows,
        "overlaps": overlaps,
        "timings": dict(run.timings),
        "real_time_factor": round(sum(run.timings.values()) / max(source.duration, 1e-9), 4),
        "warnings": list(run.warnings),
        "environment": {"python": platform.python_version(), "platform": platform.platform()},
    }
