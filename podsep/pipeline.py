"""The job, stage by stage: :class:`Splitter` keeps the models, :meth:`Splitter.split` runs the stages.

decode → diarize → find overlaps → separate and assign windows → assemble
tracks → export. Data flows one way: each stage hands its result to the next
and to the hook (:mod:`podsep.hooks`); the library prints nothing.

Memory stays bounded on long recordings: the original is read in blocks (never
held whole at its own rate), speaker activity is kept as interval sets computed
once per run, only the separated windows are kept, and tracks are rendered and
written in blocks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .assignment import WindowAssignment
from .audio import ANALYSIS_RATE, Audio, FileAudio, open_audio, stream_analysis_copy
from .config import Settings, load_settings
from .diarization import Diarization, to_samples
from .errors import InputError, PodsepError
from .export import ResultStaging, check_destination, clipping_warning, result_folder
from .intervals import SpeakerActivity
from .learn_voices import (is_embedded, learn_episode_top_octave, learn_episode_voices, profile_names,
                           save_voice_profile, voice_profile)
from .manifest import build_manifest, describe_model
from .models.diarization_cache import cache_entry, read_entry, store_entry
from .models.diarizers import Diarizer, ReferenceDiarizer, voice_space
from .models.factory import Loaded, build_diarizer, build_separator
from .models.hub import pick_device
from .models.separation import Separator
from .overlaps import Window, find_overlap_regions, plan_windows
from .render import background_plan, plan_tracks, render_tracks
from .result import SplitResult, Tracks
from .run import Run
from .separate import rendering_note, separate_and_assign
from .spill import SpillStore
from .threads import threads_for_a_library_call

ProgressHook = Callable[..., Any]
SILENCE_PEAK = 1e-5  # -100 dBFS: below this the input is treated as digital silence
QUIET_PEAK = 0.1  # analysis copies peaking below -20 dBFS are raised to ANALYSIS_PEAK for the models
ANALYSIS_PEAK = 0.5
IN_MEMORY_LIMIT = 512 * 1024 * 1024  # bytes of tracks kept as arrays when also written to disk
SPEAKER_HINTS = ("num_speakers", "min_speakers", "max_speakers")


class Splitter:
    """Splits recordings into per-speaker tracks, loading its models once.

    Build it from settings (a :class:`~podsep.config.Settings`, a YAML ``config``
    file, dotted ``overrides`` or keyword overrides such as
    ``overlaps__context=0.5``), then call :meth:`split` on any number of inputs.
    The diarizer and the separator are loaded lazily, the first time a split
    needs them, and kept; :attr:`diarizer_status` and :attr:`separator_status`
    say what was asked, what loaded and why a fallback happened.

    ``diarizer`` and ``separator`` replace the configured models (any objects
    following :class:`~podsep.models.diarizers.Diarizer` and
    :class:`~podsep.models.separation.Separator`).
    """

    def __init__(self, settings: Settings | None = None, *, config: str | os.PathLike[str] | None = None,
                 overrides: dict[str, Any] | None = None, diarizer: Diarizer | None = None,
                 separator: Separator | None = None, hf_token: str | None = None, **keywords: Any) -> None:
        if settings is None:
            settings = load_settings(config)
        self.settings = settings.with_overrides(overrides, **keywords) if (overrides or keywords) else settings
        self.device = pick_device(self.settings.device)  # a missing GPU is an error now, not mid-run
        self.hf_token = hf_token
        self._given_diarizer = diarizer
        self._given_separator = separator
        self._diarizer: Loaded | None = None
        self._separator: Loaded | None = None
        self._voice_embedder: Any = None
        self._announced: set[str] = set()

    # -- models -------------------------------------------------------------------------------

    @property
    def diarizer_status(self) -> Loaded:
        """The diarizer (loaded on first use) and how it was chosen."""
        if self._diarizer is None:
            self._diarizer = self._load("diarization", self._given_diarizer, build_diarizer)
        return self._diarizer

    @property
    def separator_status(self) -> Loaded:
        """The separator (loaded on first use) and how it was chosen, or the fallback policy."""
        if self._separator is None:
            self._separator = self._load("separation", self._given_separator, build_separator)
        return self._separator

    def _load(self, role: str, given: Any, build: Callable[..., Loaded]) -> Loaded:
        if given is not None:
            return Loaded(role, "given", given, "given")
        return build(self.settings, hf_token=self.hf_token)

    def models(self) -> dict[str, Any]:
        """What was asked and what is loaded so far, per role (nothing is loaded by asking)."""
        out: dict[str, Any] = {}
        for role, loaded in (("diarization", self._diarizer), ("separation", self._separator)):
            out[role] = loaded.describe() if loaded is not None else {"loaded": None}
        return out

    # -- the job ------------------------------------------------------------------------------------

    def split(
        self,
        audio: str | os.PathLike[str] | np.ndarray | Audio,
        *,
        sample_rate: int | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        names: Sequence[str] | None = None,
        diarization: str | os.PathLike[str] | Diarization | None = None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        overwrite: bool = False,
        hook: ProgressHook | None = None,
    ) -> SplitResult:
        """Split one recording into one full-length track per speaker.

        ``audio`` is a path (anything ffmpeg decodes) or an in-memory waveform (1-D
        or ``(channels, frames)``, with ``sample_rate``). ``diarization`` may be a
        ready-made :class:`Diarization` or an RTTM path (``file.rttm`` or
        ``file.rttm:URI``); otherwise the diarizer runs. With ``output_dir`` the
        tracks, RTTM and JSON manifest are written to ``output_dir/<stem>/``,
        all at once or not at all.
        """
        hints = {k: v for k, v in zip(SPEAKER_HINTS, (num_speakers, min_speakers, max_speakers)) if v is not None}
        settings = self.settings.with_overrides({f"diarization.{k}": v for k, v in hints.items()}) if hints \
            else self.settings
        stem, label = _describe_input(audio)
        folder = result_folder(output_dir, stem) if output_dir is not None else None
        if folder is not None:
            check_destination(folder, overwrite)
        run = Run(hook, quiet_warnings=frozenset(self._announced))
        source = _open(audio, sample_rate)
        try:
            with threads_for_a_library_call():
                return self._split_source(source, label, stem, folder, settings, run, names=names,
                                          diarization=diarization, overwrite=overwrite)
        finally:
            self._announced.update(run.warnings)
            source.close()

    def _split_source(self, source: Audio | FileAudio, label: str, stem: str, folder: Path | None,
                      settings: Settings, run: Run, *, names: Sequence[str] | None, diarization: Any,
                      overwrite: bool) -> SplitResult:
        rate, length, channels = source.sample_rate, source.num_frames, source.num_channels

        with run.stage("decode"):
            analysis, fingerprint = _decode(source, label)

        with run.stage("diarization") as stage:
            diarizer = self._choose_diarizer(diarization, run)
            found = _diarize(diarizer, analysis, fingerprint, settings, run).crop(source.duration)
            if not found.turns:
                raise InputError(f"no speech found in {label}")
            labels = list(found.speakers)
            profile, voices = voice_profile(settings, diarizer, analysis, found)
            naming = _name_speakers(labels, names or profile_names(profile, voices, labels), run)
            found = found.rename(naming)
            voices = {naming[label]: vector for label, vector in voices.items()}
            activity = SpeakerActivity([(t.start, t.end, t.speaker) for t in found.turns], found.speakers,
                                       rate, length)
            stage.artifact = found

        with run.stage("overlaps") as stage:
            regions = find_overlap_regions(found, min_duration=settings.overlaps.min_duration,
                                           merge_gap=settings.overlaps.merge_gap)
            windows: list[Window] = []
            if settings.overlaps.policy == "separate":
                planned = plan_windows(regions, found, source.duration, context=settings.overlaps.context,
                                       max_window=settings.overlaps.max_window,
                                       chunk_overlap=settings.overlaps.chunk_overlap)
                windows = [w for w in planned if len(w.speakers) >= 2]
            bounds = [(to_samples(w.start, rate, length), to_samples(w.end, rate, length)) for w in windows]
            stage.artifact = regions

        policy = settings.overlaps.policy
        separator: Any = None
        adaptation: dict[str, Any] = {"mode": settings.separation.adapt, "used": False,
                                      "reason": "no overlapped speech to separate"}
        assignments: list[WindowAssignment] = []
        with SpillStore() as spill:  # separated audio past a memory budget waits on disk for assembly
            if windows:
                loaded = self.separator_status
                self._note_fallback(loaded, "separation_fallback", run)
                separator, policy = loaded.model, loaded.overlap_policy
                if separator is not None and profile is not None and is_embedded(separator) \
                        and profile.weights is not None:  # a show's adapted weights are the starting point
                    separator = profile.separator(device=self.device, passes=settings.separation.passes,
                                                  high_band=separator.high_band or False)
                if separator is not None:
                    separator, adaptation = learn_episode_voices(separator, source, activity, regions, windows,
                                                                 settings, run, fingerprint)
                    separator, top_octave = learn_episode_top_octave(separator, source, activity, regions, settings,
                                                                     run, fingerprint, adaptation)
                    if top_octave is not None:
                        adaptation["top_octave"] = top_octave
                if separator is None:
                    windows, bounds = [], []
                else:
                    assignments = separate_and_assign(source, windows, bounds, activity, diarizer, analysis,
                                                      separator, settings, run, spill, voices=voices)

            with run.stage("assembly") as stage:
                plans = plan_tracks(activity, windows, bounds, assignments, policy, settings)
                background = background_plan(settings, policy, found.speakers)
                staging = ResultStaging(folder, stem, overwrite=overwrite) if folder is not None else None
                keep = staging is None or length * channels * (len(found.speakers) + 1) * 4 <= IN_MEMORY_LIMIT
                try:
                    rendered = render_tracks(source, plans, windows, bounds, assignments, settings, run,
                                             staging, keep, background=background["written"])
                except BaseException:
                    if staging is not None:
                        staging.abort()
                    raise
                if rendered.clipped:
                    run.warn(clipping_warning(rendered.clipped))
                if rendered.identity_error is not None:
                    background["identity_max_error"] = float(f"{rendered.identity_error:.3g}")
                stage.artifact = plans

        files: dict[str, Path] = {}
        try:  # from here to the rename, any failure (or Ctrl-C) removes the staging folder
            models = {"diarization": describe_model(diarizer), "separation": describe_model(separator)}
            manifest = build_manifest(label, fingerprint, source, found, activity, regions, windows, assignments,
                                      settings, policy, models, run)
            manifest["background"] = background
            manifest["overlap_rendering"] = rendering_note(settings, separator, rate)
            manifest["adaptation"] = adaptation
            if settings.separation.voices:
                manifest["voices"] = save_voice_profile(settings, profile, voices, separator, run,
                                                       voice_space(diarizer))
            if staging is not None:
                with run.stage("export") as stage:
                    if settings.output.extras:
                        _write_editor_files(staging, manifest, found)
                    files = staging.finish(found.to_rttm(stem), manifest)
                    stage.artifact = files
                manifest["timings"] = dict(run.timings)
        except BaseException:
            if staging is not None:
                staging.abort()
            raise
        tracks = Tracks(rendered.arrays if keep else None,
                        {s: files[f"track:{s}"] for s in found.speakers} if not keep else None)
        result = SplitResult(tracks, rate, found, manifest, files, rendered.background)
        run.report("done", result, completed=1, total=1)
        return result

    def _choose_diarizer(self, diarization: Any, run: Run) -> Diarizer:
        """A given diarization (object or RTTM) poses as a diarizer; otherwise the loaded one."""
        if diarization is None:
            loaded = self.diarizer_status
            self._note_fallback(loaded, "diarization_fallback", run)
            return loaded.model
        embedder = self._embedder_for_given_turns()
        if isinstance(diarization, Diarization):
            return ReferenceDiarizer(diarization, "given", embedder=embedder)
        text = str(diarization)
        path, uri = Path(text), None
        if not path.exists() and ":" in text:
            head, _, tail = text.rpartition(":")
            path, uri = Path(head), tail
        if not path.is_file():
            raise InputError(f"diarization file not found: {text}")
        return ReferenceDiarizer(Diarization.from_rttm(path, uri), str(path), embedder=embedder)

    def _embedder_for_given_turns(self) -> Any:
        """Voice embeddings for assignment (and voice profiles) when the turns are given.

        A given diarizer object embeds; otherwise the embedded diarizer's GE2E
        encoder does (loaded once, only when voice evidence is wanted), so that
        an RTTM run still knows whose voice each separated source carries.
        """
        if self._given_diarizer is not None:
            return self._given_diarizer
        settings = self.settings
        voice_evidence = settings.assignment.embedding_weight > 0 and settings.overlaps.policy == "separate"
        if not voice_evidence and not settings.separation.voices:
            return None
        if self._voice_embedder is None:
            from .models.embedded.diarizer import VoiceEmbedder

            self._voice_embedder = VoiceEmbedder(self.device)
        return self._voice_embedder

    @staticmethod
    def _note_fallback(loaded: Loaded, key: str, run: Run) -> None:
        for message in loaded.warnings:
            run.warn(message)
        if loaded.fallback_reason:
            note: Any = loaded.fallback_reason
            if loaded.role == "separation":
                note = {"reason": loaded.fallback_reason, "policy": loaded.overlap_policy,
                        "separator": loaded.kind}
            run.notes[key] = note


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
    """Split one recording with a one-off :class:`Splitter` (see :meth:`Splitter.split`)."""
    extra = dict(overrides or {})
    if device is not None:
        extra["device"] = device
    splitter = Splitter(settings, config=config, overrides=extra, diarizer=diarizer, separator=separator,
                        hf_token=hf_token)
    return splitter.split(audio, sample_rate=sample_rate, output_dir=output_dir, names=names,
                          diarization=diarization, num_speakers=num_speakers, min_speakers=min_speakers,
                          max_speakers=max_speakers, overwrite=overwrite, hook=hook)


# -- stages -------------------------------------------------------------------------------------


def _decode(source: Audio | FileAudio, label: str) -> tuple[np.ndarray, str]:
    """The mono analysis copy (levelled for the models) and the input's fingerprint.

    Voice activity and speaker models expect ordinary levels; a recording
    peaking at -60 dBFS is still ordinary speech, so a quiet analysis copy is
    raised. Digital silence is refused first, and noise stays noise however loud.
    """
    analysis, peak = stream_analysis_copy(source, ANALYSIS_RATE)
    if peak < SILENCE_PEAK:
        raise InputError(f"input is silent (no sample above -100 dBFS): {label}")
    if peak < QUIET_PEAK:
        analysis *= np.float32(ANALYSIS_PEAK / peak)
    return analysis, _fingerprint(source, label)


def _diarize(diarizer: Diarizer, analysis: np.ndarray, fingerprint: str, settings: Settings, run: Run) -> Diarization:
    """Run the diarizer, or reuse the cached result of the same input and settings."""
    hints = {k: getattr(settings.diarization, k) for k in SPEAKER_HINTS}
    entry = None
    if settings.diarization.cache and not isinstance(diarizer, ReferenceDiarizer):
        entry = cache_entry(fingerprint, diarizer, hints, __version__)
        cached = read_entry(entry)
        if cached is not None:
            run.notes["diarization_cache"] = "reused"
            return cached
    raw = diarizer(analysis, ANALYSIS_RATE, hook=run.substep_hook("diarization"), **hints)
    # Millisecond resolution, as in the RTTM written and cached: a rerun gives exactly the same turns.
    result = Diarization.from_turns([(round(t.start, 3), round(t.end, 3), t.speaker) for t in raw.turns], raw.uri)
    if entry is not None and result.turns and store_entry(entry, result):
        run.notes["diarization_cache"] = "stored"
    return result


def _name_speakers(labels: list[str], names: Sequence[str] | None, run: Run) -> dict[str, str]:
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


def _write_editor_files(staging: ResultStaging, manifest: dict[str, Any], diarization: Diarization) -> None:
    """Timeline picture, Audacity labels, REAPER project and review page, inside the staging folder."""
    from .editor import EditorInput, write_editor_files

    tracks = {role.partition(":")[2]: path.name for role, path in staging.files.items() if role.startswith("track:")}
    background = staging.files.get("background")
    data = EditorInput.from_manifest(manifest, diarization.turns, staging.stem, tracks,
                                     background.name if background is not None else None)
    for role, path in write_editor_files(staging.path, data).items():
        staging.files[role] = staging.folder / path.name


# -- inputs -------------------------------------------------------------------------------------

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
