"""``podsep eval``: score podsep and its baselines side by side on material with ground truth.

Why this exists: podsep's claim is that separating *only* around overlaps, with
diarization deciding who is who, beats both what splitters do (copy overlaps
into every track, or mute them) and the naive whole-file use of a separator.
That claim is only worth something measured, on recordings where every
speaker's contribution is known sample for sample.

Material (one of):

* generated: ``--speech-dir`` + ``--count``/``--seed``...: conversations from
  :mod:`podsep.lab.synth`, written to ``OUT/set/conv_NNN`` so they can be reused;
* ``--set DIR``: folders of ``mixture.wav`` + ``s0.wav``, ``s1.wav``... (a
  generated set, or LibriMix-style mixtures; turns come from ``reference.rttm``
  or, when absent, from the reference tracks' energy); a stereo recording (or a
  folder of them) with one speaker per channel; or a folder of audio files with
  RTTM files (``URI.wav`` + turns for ``URI``; ``.uem`` honoured): diarization
  scores only.

Systems (all in the same run, each failure contained to its own row):

* ``podsep``: as configured (diarizer and separator from the settings);
* ``oracle-diarization``: reference turns, the configured separator (or the
  ``--separator-double``);
* ``duplicate`` / ``mute``: reference turns, overlaps copied / silenced;
* ``full-file``: the separator over the whole file in chunks, sources matched
  to speakers with the reference turns (:mod:`podsep.lab.baselines`);
* ``oracle``: reference turns and reference sources (the ceiling).

A system whose models cannot be loaded is reported ``unavailable`` with the
one-line reason, never silently dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..diarization import Diarization
from ..errors import InputError, PodsepError
from ..export import json_default, safe_name

SYSTEMS: tuple[str, ...] = ("podsep", "oracle-diarization", "duplicate", "mute", "full-file", "oracle")
#: Systems that are given the reference turns: their DER is zero by construction, so it is not reported.
REFERENCE_TURN_SYSTEMS = frozenset({"oracle-diarization", "duplicate", "mute", "full-file", "oracle"})
SEPARATION_METRICS: tuple[str, ...] = (
    "si_sdr", "si_sdr_overlap", "si_sdr_solo", "sdr", "sdr_overlap", "sdr_solo", "leakage_db",
    "energy_high_db", "si_sdr_high",
)
DIARIZATION_METRICS: tuple[str, ...] = ("der", "jer", "der_collar", "jer_collar")
COLLARS = (0.0, 0.25)
_AUDIO_SUFFIXES = (".wav", ".flac", ".opus", ".ogg", ".mp3", ".m4a")


# --------------------------------------------------------------------------------------
# material


@dataclass
class Item:
    """One recording with its ground truth.

    ``references`` (speaker -> mono track, same labels as ``diarization``) is
    ``None`` for RTTM-only material, which supports diarization scores only.
    """

    name: str
    mixture: np.ndarray
    sample_rate: int
    diarization: Diarization
    references: dict[str, np.ndarray] | None = None
    uem: list[tuple[float, float]] | None = None
    kind: str = "generated"

    @property
    def duration(self) -> float:
        return len(self.mixture) / self.sample_rate

    @property
    def overlap_ratio(self) -> float:
        from .synth import overlap_ratio_of

        return overlap_ratio_of(self.diarization)


def turns_from_tracks(references: dict[str, np.ndarray], sample_rate: int, *, range_db: float = 35.0,
                      fill_gap: float = 0.3, min_turn: float = 0.1) -> Diarization:
    """Reference turns of material that has tracks but no RTTM (LibriMix, one speaker per channel).

    A 10 ms frame is speech when it is within ``range_db`` of the track's loud
    frames (99th percentile) and above -70 dBFS; gaps shorter than ``fill_gap``
    are closed and turns shorter than ``min_turn`` dropped, so breathing pauses
    inside a sentence do not split a turn.
    """
    frame = max(1, sample_rate // 100)
    turns = []
    for speaker, track in references.items():
        count = len(track) // frame
        if count == 0:
            continue
        power = (np.asarray(track[: count * frame], dtype=np.float64).reshape(count, frame) ** 2).mean(axis=1)
        level = 10.0 * np.log10(power + 1e-12)
        threshold = max(np.percentile(level, 99) - range_db, -70.0)
        voiced = level > threshold
        runs = _runs(voiced)
        merged: list[list[int]] = []
        for a, b in runs:
            if merged and a - merged[-1][1] <= int(fill_gap * 100):
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            if b - a >= int(min_turn * 100):
                turns.append((a / 100.0, b / 100.0, speaker))
    return Diarization.from_turns(turns)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``(channels, frames)`` float32 and the rate, through podsep's own decoder (ffmpeg for opus...)."""
    from ..audio import load_audio

    audio = load_audio(path)
    return audio.samples, audio.sample_rate


def _mixture_folder_item(folder: Path, root: Path) -> Item:
    mixture, rate = _read(folder / "mixture.wav")
    track_files = sorted((p for p in folder.glob("s*.wav") if p.stem[1:].isdigit()), key=lambda p: int(p.stem[1:]))
    if not track_files:
        raise InputError(f"{folder} has mixture.wav but no s0.wav, s1.wav... reference tracks")
    rttm = folder / "reference.rttm"
    meta_path = folder / "meta.json"
    labels = [p.stem for p in track_files]
    if meta_path.is_file():  # generated sets record which file is which speaker
        try:
            names = json.loads(meta_path.read_text(encoding="utf-8")).get("files", {}).get("tracks", {})
            labels = [names.get(p.name, p.stem) for p in track_files]
        except (OSError, ValueError):
            pass
    references = {}
    for label, path in zip(labels, track_files):
        track, track_rate = _read(path)
        if track_rate != rate or track.shape[1] != mixture.shape[1]:
            raise InputError(f"{path} does not match mixture.wav (rate or length)")
        references[label] = track.mean(axis=0)
    diarization = Diarization.from_rttm(rttm) if rttm.is_file() else turns_from_tracks(references, rate)
    name = folder.relative_to(root).as_posix() if folder != root else folder.name
    return Item(name, mixture.mean(axis=0), rate, diarization, references, kind="mixture-folder")


def _stereo_item(path: Path) -> Item:
    samples, rate = _read(path)
    if samples.shape[0] < 2:
        raise InputError(f"{path} is mono: a one-speaker-per-channel recording needs two or more channels")
    references = {f"ch{index}": samples[index].astype(np.float32) for index in range(samples.shape[0])}
    mixture = np.sum(samples, axis=0).astype(np.float32)
    return Item(path.stem, mixture, rate, turns_from_tracks(references, rate), references, kind="stereo")


def _rttm_items(folder: Path) -> list[Item]:
    turns: dict[str, Diarization] = {}
    for rttm in sorted(folder.glob("*.rttm")):
        uris = {line.split()[1] for line in rttm.read_text(encoding="utf-8").splitlines()
                if line.startswith("SPEAKER") and len(line.split()) > 1}
        for uri in sorted(uris):
            turns[uri] = Diarization.from_rttm(rttm, uri)
    uems: dict[str, list[tuple[float, float]]] = {}
    for uem in sorted(folder.glob("*.uem")):
        for line in uem.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) >= 4:
                uems.setdefault(fields[0], []).append((float(fields[2]), float(fields[3])))
    items = []
    for uri, diarization in sorted(turns.items()):
        audio = next((folder / f"{uri}{suffix}" for suffix in _AUDIO_SUFFIXES if (folder / f"{uri}{suffix}").is_file()), None)
        if audio is None:
            continue
        samples, rate = _read(audio)
        items.append(Item(uri, samples.mean(axis=0), rate, diarization, None, uems.get(uri), kind="rttm"))
    if not items:
        raise InputError(f"{folder}: no audio file matches a recording of its RTTM files")
    return items


def read_set(path: str | os.PathLike[str], limit: int | None = None) -> list[Item]:
    """Load existing material: mixture folders, stereo recordings or an RTTM set (see the module doc)."""
    root = Path(path)
    if root.is_file():
        return [_stereo_item(root)]
    if not root.is_dir():
        raise InputError(f"evaluation set not found: {root}")
    folders = sorted({p.parent for p in root.rglob("mixture.wav")})
    if folders:
        return [_mixture_folder_item(folder, root) for folder in folders[:limit]]
    if any(root.glob("*.rttm")):
        return _rttm_items(root)[:limit]
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES)
    if not files:
        raise InputError(f"{root} holds no mixture.wav folders, RTTM files or recordings")
    return [_stereo_item(p) for p in files[:limit]]


def simulated_rirs(folder: Path, count: int, seed: int, sample_rate: int = 16000,
                   rt60: tuple[float, float] = (0.2, 0.6)) -> Path:
    """Write ``count`` simulated room responses (direct path + exponentially decaying diffuse tail).

    A statistical room model, not an image-source simulation: enough to put
    speakers in rooms of different reverberation times when no measured
    responses are at hand. Returns ``folder``.
    """
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        seconds = float(rng.uniform(*rt60))
        length = int(seconds * sample_rate)
        t = np.arange(length) / sample_rate
        decay = np.exp(-6.9 * t / seconds)  # -60 dB at rt60
        tail = rng.standard_normal(length) * decay * 0.25
        onset = int(rng.uniform(0.002, 0.01) * sample_rate)  # first reflections after the direct path
        tail[:onset] = 0.0
        tail[0] = 1.0
        sf.write(folder / f"sim_rir_{index:02d}.wav", (tail / np.max(np.abs(tail))).astype(np.float32), sample_rate)
    return folder


def generate_items(args: argparse.Namespace, set_dir: Path) -> list[Item]:
    """Generate the set described by the command line, write it to ``set_dir`` and load it back."""
    from .synth import ConversationSpec, conversation_seed, generate_conversation

    speakers = _int_list(args.speakers, "--speakers")
    ratios = _float_list(args.overlap_ratio, "--overlap-ratio")
    rir_dir, rir_glob = None, "*.wav"
    if args.reverb == "measured":
        if not args.rir_dir:
            raise PodsepError("--reverb measured needs --rir-dir (e.g. ../shared/data/meeting-sim)")
        rir_dir, rir_glob = Path(args.rir_dir), args.rir_glob
    elif args.reverb == "simulated":
        rir_dir = simulated_rirs(set_dir / "rirs", 8, args.seed, args.rate)
    if args.noise_snr is not None and not args.noise:
        raise PodsepError("--noise-snr needs --noise (a noise or music file, or a folder of them)")
    items = []
    for index in range(args.count):
        spec = ConversationSpec(
            num_speakers=speakers[index % len(speakers)], duration=args.duration, sample_rate=args.rate,
            overlap_ratio=ratios[index % len(ratios)], reverb=rir_dir is not None, rir_glob=rir_glob,
            noise_snr=args.noise_snr if args.noise else None,
        )
        name = f"conv_{index:03d}"
        conversation = generate_conversation(
            Path(args.speech_dir), spec, conversation_seed(args.seed, index), rir_dir=rir_dir,
            noise_path=Path(args.noise) if args.noise else None, uri=name,
        )
        conversation.metadata["set"] = {"seed": args.seed, "index": index, "count": args.count}
        conversation.write(set_dir / name, overwrite=True)
        items.append(Item(name, conversation.mixture, conversation.sample_rate, conversation.diarization,
                          dict(conversation.references), kind="generated"))
    return items


def _int_list(text: str | int, flag: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError as error:
        raise PodsepError(f"{flag} takes integers separated by commas, got {text!r}") from error
    if not values:
        raise PodsepError(f"{flag} is empty")
    return values


def _float_list(text: str | float, flag: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError as error:
        raise PodsepError(f"{flag} takes numbers separated by commas, got {text!r}") from error
    if not values:
        raise PodsepError(f"{flag} is empty")
    return values


# --------------------------------------------------------------------------------------
# memory


class PeakMemory:
    """Peak resident memory (and GPU memory) while a block runs, sampled in a background thread.

    ``ru_maxrss`` only ever grows over a process's life, so it cannot tell one
    system's peak from another's; sampling ``VmRSS`` can. Falls back to
    ``ru_maxrss`` where ``/proc`` does not exist.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.start_rss_mb = 0.0
        self.peak_gpu_mb: float | None = None
        self._stop = False
        self._thread: Any = None

    def __enter__(self) -> "PeakMemory":
        import threading

        self.start_rss_mb = self.peak_rss_mb = current_rss_mb()
        _reset_gpu_peak()
        self._stop = False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop:
            self.peak_rss_mb = max(self.peak_rss_mb, current_rss_mb())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, current_rss_mb())
        self.peak_gpu_mb = _gpu_peak_mb()


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_gpu_peak() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


# --------------------------------------------------------------------------------------
# systems


class Unavailable(Exception):
    """A system cannot run here (a model is missing, the material lacks what it needs)."""


@dataclass
class SystemOutput:
    """What one system produced for one item: tracks keyed by *reference* speaker labels."""

    tracks: dict[str, np.ndarray]
    hypothesis: Diarization | None
    timings: dict[str, float]
    #: max |speaker tracks + background - input| (float, in memory); None when no background exists.
    identity_error: float | None = None
    #: the run's manifest (what each overlap window did: assignment, confidence, rendering), when podsep ran
    manifest: dict[str, Any] | None = None


@dataclass
class EvalOptions:
    """How the systems are configured for one evaluation run."""

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    separator_double: str | None = None  # "small", "full" or a SepFormer folder: random-weight stand-in
    models_dir: Path | None = None
    chunk: float = 30.0
    chunk_overlap: float = 2.0
    known_speakers: bool = False


class _Systems:
    """The systems under test, each model loaded once, lazily.

    The ``podsep`` row runs a :class:`podsep.Splitter` built from the same
    settings as ``podsep split`` (same factory, same fallbacks): offline that is
    the embedded path, and it is reported like any other system.
    """

    def __init__(self, options: EvalOptions) -> None:
        from ..config import load_settings
        from ..pipeline import Splitter

        self.options = options
        self.settings = load_settings(options.config, options.overrides)
        self.splitter = Splitter(self.settings)
        self._double: Any = None
        self._double_error: str | None = None
        self._double_note: str | None = None

    def separator(self) -> Any:
        """The separator the configured settings load (through the factory), or the double asked for."""
        if self.options.separator_double:
            return self._double_separator()
        loaded = self._loaded_separator()
        return loaded.model

    def _loaded_separator(self) -> Any:
        from ..errors import ModelError

        try:
            loaded = self.splitter.separator_status
        except ModelError as error:
            raise Unavailable(str(error)) from error
        if loaded.model is None:
            raise Unavailable(loaded.fallback_reason or "separator unavailable")
        return loaded

    def _double_separator(self) -> Any:
        from ..errors import ModelError
        from ..models.hub import pick_device
        from ..models.separation import SepformerSeparator

        if self._double is None and self._double_error is None:
            try:
                source, self._double_note = self._double_folder(self.options.separator_double or "")
                self._double = SepformerSeparator(source, device=pick_device(self.settings.device),
                                                  cache_dir=self.settings.cache_dir,
                                                  batch_size=self.settings.separation.batch_size).load()
            except ModelError as error:
                self._double_error = str(error)
        if self._double is None:
            raise Unavailable(self._double_error or "separator unavailable")
        return self._double

    def _double_folder(self, double: str) -> tuple[str, str]:
        from .fixture_models import SIZES, build_sepformer

        if double in SIZES:
            root = self.options.models_dir or Path.cwd() / "podsep_eval_models"
            folder = root / f"sepformer-random-{double}"
            if not (folder / "masknet.ckpt").is_file():
                build_sepformer(folder, size=double)
            return str(folder), f"random-weight SepFormer ({double}): numbers are meaningless"
        return double, f"separator double {double}: numbers are only as good as that model"

    @property
    def separator_note(self) -> str | None:
        if self.options.separator_double:
            return self._double_note
        loaded = self.splitter.separator_status
        return f"separator: {loaded.kind}"

    def prepare(self, system: str) -> str | None:
        """Load what ``system`` needs; raise :class:`Unavailable` with the reason. Returns a note."""
        from ..errors import ModelError

        if system == "podsep":
            try:
                diarizer = self.splitter.diarizer_status
                separator = self.splitter.separator_status
            except ModelError as error:
                raise Unavailable(str(error)) from error
            return f"diarizer: {diarizer.kind}; separator: {separator.kind}" + (
                f" (overlaps {separator.overlap_policy})" if separator.model is None else "")
        if system in ("oracle-diarization", "full-file"):
            self.separator()
            return self.separator_note
        if system == "oracle":
            return "reference turns and reference sources: the ceiling"
        return None

    def run(self, system: str, item: Item) -> SystemOutput:
        """Run ``system`` on ``item``."""
        from ..pipeline import split

        reference_speakers = item.diarization.speakers
        if system == "oracle":
            from .oracle import OracleSeparator

            if item.references is None:
                raise Unavailable("needs reference tracks (this material has turns only)")
            oracle = OracleSeparator(item.mixture, {s: item.references[s] for s in reference_speakers})
            result = split(item.mixture, sample_rate=item.sample_rate, diarization=item.diarization,
                           separator=oracle, settings=self._settings("separate"))
            return _output(result, item)
        if system in ("duplicate", "mute"):
            result = split(item.mixture, sample_rate=item.sample_rate, diarization=item.diarization,
                           settings=self._settings(system))
            return _output(result, item)
        if system == "oracle-diarization":
            result = split(item.mixture, sample_rate=item.sample_rate, diarization=item.diarization,
                           separator=self.separator(), settings=self._settings("separate"))
            return _output(result, item)
        if system == "full-file":
            from .baselines import full_file_tracks

            tracks, timings = full_file_tracks(
                item.mixture, item.sample_rate, self.separator(), item.diarization, reference_speakers,
                chunk=self.options.chunk, overlap=self.options.chunk_overlap,
            )
            return SystemOutput(tracks, None, timings)
        if system == "podsep":
            count = len(reference_speakers) if self.options.known_speakers else None
            result = self.splitter.split(item.mixture, sample_rate=item.sample_rate, num_speakers=count)
            mapping = _optimal_mapping(item.diarization, result.diarization)
            tracks = {mapping[label]: track[0] if track.ndim == 2 and track.shape[0] == 1 else track.mean(axis=0)
                      for label, track in result.tracks.items() if label in mapping}
            return SystemOutput(tracks, result.diarization, dict(result.manifest["timings"]),
                                _identity_error(result, item), result.manifest)
        raise ValueError(f"unknown system {system!r}")

    def _settings(self, policy: str) -> Any:
        return self.settings.with_overrides({"overlaps.policy": policy})


def _output(result: Any, item: Item) -> SystemOutput:
    return SystemOutput(_mono_tracks(result.tracks), None, dict(result.manifest["timings"]),
                        _identity_error(result, item), result.manifest)


def _identity_error(result: Any, item: Item) -> float | None:
    """How far the speaker tracks plus the background are from the input (None: no background)."""
    if result.background is None:
        return None
    total = np.asarray(result.background, np.float64).copy()
    for track in result.tracks.values():
        total += track
    mixture = np.asarray(item.mixture, np.float64)
    mixture = mixture[None, :] if mixture.ndim == 1 else mixture.T
    return float(np.max(np.abs(total - mixture))) if total.size else 0.0


def _mono_tracks(tracks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {label: track.mean(axis=0) for label, track in tracks.items()}


def _optimal_mapping(reference: Diarization, hypothesis: Diarization) -> dict[str, str]:
    """Hypothesis label -> reference label, matched to minimise confusion (pyannote.metrics)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    if not hypothesis.turns:
        return {}
    mapping = DiarizationErrorRate().optimal_mapping(reference.to_annotation(), hypothesis.to_annotation())
    return {str(hyp): str(ref) for hyp, ref in mapping.items()}


# --------------------------------------------------------------------------------------
# scoring


def score_item(item: Item, output: SystemOutput, system: str) -> dict[str, Any]:
    """Separation scores per speaker and diarization scores of one system on one item."""
    from .metrics import (diarization_error, high_band_edge_hz, high_band_scores, overlap_regions_mask, sdr,
                          separation_scores, solo_mask)

    scores: dict[str, Any] = {}
    if item.references is not None:
        n = len(item.mixture)
        estimates = {s: np.asarray(output.tracks.get(s, np.zeros(n, dtype=np.float32)), dtype=np.float32)[:n]
                     for s in item.references}
        per_speaker = separation_scores(item.references, estimates, item.diarization, item.sample_rate)
        overlap = overlap_regions_mask(item.diarization, item.sample_rate, n)
        for speaker, values in per_speaker.items():
            own = item.diarization.activity(item.sample_rate, n, [speaker])[0]
            values["sdr_overlap"] = sdr(item.references[speaker], estimates[speaker], overlap & own)
            values["sdr_solo"] = sdr(item.references[speaker], estimates[speaker],
                                     solo_mask(item.diarization, item.sample_rate, n, [speaker]))
            values["overlap_seconds"] = round(float((overlap & own).sum()) / item.sample_rate, 3)
            values.update(high_band_scores(item.references[speaker], estimates[speaker], item.sample_rate,
                                           high_band_edge_hz(item.sample_rate), overlap & own))
        scores["speakers"] = per_speaker
        scores["high_band_edge_hz"] = high_band_edge_hz(item.sample_rate)
    if output.identity_error is not None:
        scores["identity_error"] = output.identity_error
    if output.hypothesis is not None and system not in REFERENCE_TURN_SYSTEMS:
        diarization: dict[str, float] = {}
        for collar in COLLARS:
            errors = diarization_error(item.diarization, output.hypothesis, collar=collar, uem=item.uem)
            suffix = "" if collar == 0 else "_collar"
            diarization[f"der{suffix}"] = errors["der"]
            diarization[f"jer{suffix}"] = errors["jer"]
        scores["diarization"] = diarization
    duration = max(item.duration, 1e-9)
    scores["timings"] = output.timings
    scores["rtf"] = {stage: round(seconds / duration, 5) for stage, seconds in output.timings.items()}
    scores["rtf"]["total"] = round(sum(output.timings.values()) / duration, 5)
    return scores


def _aggregate(values: list[float]) -> float | None:
    """Mean of the finite values; a column that is all ±inf keeps that infinity (e.g. muted overlaps)."""
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    if values and all(v == values[0] for v in values):
        return values[0]
    return None


def summarise(results: list[dict[str, Any]], systems: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per system: means over every (item, speaker) pair of each metric, mean RTF and peak memory."""
    summary: dict[str, dict[str, Any]] = {}
    for name, info in systems.items():
        row: dict[str, Any] = {"status": info["status"]}
        runs = [r["systems"][name] for r in results if r["systems"].get(name, {}).get("status") == "ok"]
        speaker_scores = [values for run in runs for values in run.get("speakers", {}).values()]
        for metric in SEPARATION_METRICS:
            values = [s[metric] for s in speaker_scores if metric in s and not math.isnan(s[metric])]
            row[metric] = _aggregate(values)
            row[f"{metric}_nonfinite"] = sum(1 for v in values if not math.isfinite(v))
        for metric in DIARIZATION_METRICS:
            values = [run["diarization"][metric] for run in runs if "diarization" in run]
            row[metric] = float(np.mean(values)) if values else None
        stages = sorted({stage for run in runs for stage in run["rtf"]})
        row["rtf"] = {stage: float(np.mean([run["rtf"].get(stage, 0.0) for run in runs])) for stage in stages}
        identity = [run["identity_error"] for run in runs if run.get("identity_error") is not None]
        row["identity_max_error"] = max(identity) if identity else None
        edges = sorted({run["high_band_edge_hz"] for run in runs if "high_band_edge_hz" in run})
        row["high_band_edges_hz"] = edges
        row["items"] = len(runs)
        row["failed_items"] = sum(1 for r in results if r["systems"].get(name, {}).get("status") == "failed")
        row["peak_rss_mb"] = info.get("peak_rss_mb")
        row["peak_gpu_mb"] = info.get("peak_gpu_mb")
        summary[name] = row
    return summary


# --------------------------------------------------------------------------------------
# the run


def evaluate(items: Sequence[Item], systems: Sequence[str], options: EvalOptions | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every system on every item and score it; one failing system or item never stops the run.

    Returns the JSON-ready result: ``systems`` (status, reason, note, peak
    memory), ``items`` (per item and system: per-speaker scores, diarization
    scores, timings, real-time factors, and the run's ``manifest`` when podsep
    wrote one; :func:`write_outputs` moves those to files) and ``summary``
    (means per system).
    """
    options = options or EvalOptions()
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise PodsepError(f"unknown system(s): {', '.join(unknown)} (choose from {', '.join(SYSTEMS)})")
    runner = _Systems(options)
    info: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = [
        {"name": item.name, "kind": item.kind, "duration": round(item.duration, 3), "sample_rate": item.sample_rate,
         "speakers": item.diarization.speakers, "overlap_ratio": round(item.overlap_ratio, 4), "systems": {}}
        for item in items
    ]
    for system in systems:
        entry: dict[str, Any] = {"status": "ok", "reason": None, "note": None,
                                 "reference_turns": system in REFERENCE_TURN_SYSTEMS}
        info[system] = entry
        try:
            entry["note"] = runner.prepare(system)
        except Unavailable as reason:
            entry.update(status="unavailable", reason=str(reason))
            if progress:
                progress(f"{system}: unavailable ({reason})")
            continue
        except Exception as error:  # a broken system is reported, the others still run
            entry.update(status="failed", reason=f"{type(error).__name__}: {_first_line(error)}")
            continue
        with PeakMemory() as memory:
            for item, result in zip(items, results):
                began = time.perf_counter()
                try:
                    output = runner.run(system, item)
                    result["systems"][system] = {"status": "ok", **score_item(item, output, system)}
                    if output.manifest is not None:
                        result["systems"][system]["manifest"] = output.manifest
                except Unavailable as reason:
                    result["systems"][system] = {"status": "unavailable", "reason": str(reason)}
                except Exception as error:
                    result["systems"][system] = {
                        "status": "failed", "reason": f"{type(error).__name__}: {_first_line(error)}",
                        "traceback": traceback.format_exc(limit=4),
                    }
                if progress:
                    progress(f"{system}: {item.name} ({result['systems'][system]['status']}, "
                             f"{time.perf_counter() - began:.1f} s)")
        entry["peak_rss_mb"] = round(memory.peak_rss_mb, 1)
        entry["peak_gpu_mb"] = round(memory.peak_gpu_mb, 1) if memory.peak_gpu_mb is not None else None
        statuses = {r["systems"][system]["status"] for r in results}
        if statuses == {"unavailable"}:
            entry.update(status="unavailable", reason=results[0]["systems"][system]["reason"])
        elif statuses == {"failed"}:
            entry.update(status="failed", reason=results[0]["systems"][system]["reason"])
    return {"systems": info, "items": results, "summary": summarise(results, info)}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


# --------------------------------------------------------------------------------------
# output


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and footnotes of the summary table (shared by the terminal and the Markdown docs)."""
    header = ["system", "SI-SDR", "SI-SDR ovl", "SI-SDR solo", "SDR", "SDR ovl", "SDR solo", "leak dB",
              "E hi ovl", "SI-SDR hi ovl", "DER", "DER c.25", "JER", "RTF", "peak RSS MB", "sum err"]
    rows, notes = [], []
    for name, row in report["summary"].items():
        info = report["systems"][name]
        if info["status"] != "ok":
            rows.append([name] + [info["status"]] + ["—"] * (len(header) - 2))
            notes.append(f"{name}: {info['status']}: {info['reason']}")
            continue
        if info.get("note"):
            notes.append(f"{name}: {info['note']}")
        if row["failed_items"]:
            notes.append(f"{name}: {row['failed_items']} recording(s) failed (see results.json)")
        reference = "ref" if info["reference_turns"] else "—"
        rows.append([
            name, *(_fmt(row[m]) for m in ("si_sdr", "si_sdr_overlap", "si_sdr_solo", "sdr", "sdr_overlap", "sdr_solo",
                                           "leakage_db", "energy_high_db", "si_sdr_high")),
            *(_fmt(row[m], 3) if row[m] is not None else reference for m in ("der", "der_collar", "jer")),
            _fmt(row["rtf"].get("total"), 3), _fmt(info.get("peak_rss_mb"), 0),
            f"{row['identity_max_error']:.1e}" if row.get("identity_max_error") is not None else "—",
        ])
    edges = sorted({edge for row in report["summary"].values() for edge in row.get("high_band_edges_hz", [])})
    if edges:
        notes.append("hi = above " + " / ".join(f"{edge / 1000:g} kHz" for edge in edges)
                     + " (the separator's band edge): E = the track's energy there relative to the reference "
                     "(dB, 0 = right; pasted band-limited overlaps sound dull); sum err = max |speaker tracks "
                     "+ background - input| (— : no background, e.g. duplicate)")
    return header, rows, notes


def print_table(report: dict[str, Any], console: Any = None) -> None:
    """The summary as a rich table on the terminal, notes (unavailable systems, stand-ins) below it."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    header, rows, notes = table_rows(report)
    table = Table(title=f"podsep eval: {len(report['items'])} recording(s), means over speakers "
                        f"(dB; ovl = overlapped regions, solo = own solo speech)")
    for index, column in enumerate(header):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for note in notes:
        console.print(f"  {note}", highlight=False)


def markdown_table(report: dict[str, Any]) -> str:
    """The summary table as Markdown (for the README / docs), notes as a list below it."""
    header, rows, notes = table_rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_csv(report: dict[str, Any], path: Path) -> None:
    """One row per (recording, system, speaker); diarization and timing columns repeat per speaker."""
    columns = ["item", "kind", "overlap_ratio", "duration", "system", "status", "speaker", *SEPARATION_METRICS,
               "overlap_seconds", *DIARIZATION_METRICS, "rtf_total", "reason"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for item in report["items"]:
            for system, run in item["systems"].items():
                base = {"item": item["name"], "kind": item["kind"], "overlap_ratio": item["overlap_ratio"],
                        "duration": item["duration"], "system": system, "status": run["status"],
                        "reason": run.get("reason") or ""}
                if run["status"] != "ok":
                    writer.writerow(base)
                    continue
                base["rtf_total"] = run["rtf"]["total"]
                base.update(run.get("diarization", {}))
                speakers = run.get("speakers") or {"": {}}
                for speaker, values in speakers.items():
                    writer.writerow({**base, "speaker": speaker,
                                     **{k: v for k, v in values.items() if k in columns}})


def plot(report: dict[str, Any], path: Path) -> None:
    """Per-speaker SI-SDR (whole track, and overlapped regions) against each recording's overlap ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    names = [n for n, info in report["systems"].items() if info["status"] == "ok"]
    markers = "osD^vP*X"
    dropped = 0
    for index, name in enumerate(names):
        for axis, metric in zip(axes, ("si_sdr", "si_sdr_overlap")):
            xs, ys = [], []
            for item in report["items"]:
                run = item["systems"].get(name, {})
                for values in run.get("speakers", {}).values() if run.get("status") == "ok" else []:
                    if math.isfinite(values[metric]):
                        xs.append(item["overlap_ratio"])
                        ys.append(values[metric])
                    else:
                        dropped += 1
            label = name + (" (random weights)" if "random-weight" in (report["systems"][name].get("note") or "") else "")
            axis.scatter(xs, ys, label=label, marker=markers[index % len(markers)], alpha=0.7, s=22)
    for axis, title in zip(axes, ("whole track", "overlapped regions")):
        axis.set_title(f"SI-SDR per speaker, {title}")
        axis.set_xlabel("overlap ratio of the recording")
        axis.set_ylabel("SI-SDR (dB)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    unavailable = [n for n, info in report["systems"].items() if info["status"] != "ok"]
    notes = []
    if unavailable:
        notes.append("not run here: " + ", ".join(unavailable))
    if dropped:
        notes.append(f"{dropped} non-finite value(s) not drawn (e.g. muted overlaps = -inf)")
    if notes:
        figure.text(0.01, 0.01, "; ".join(notes), fontsize=8)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``results.json``, ``results.csv``, ``si_sdr_vs_overlap.png`` and ``manifests/`` in ``out_dir``.

    Each run's manifest (``manifests/<item>.<system>.json``, the same file
    ``podsep split`` writes) says what every overlap window did, so a score can
    be traced to its windows; ``results.json`` names the file instead of holding it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "results.json", "csv": out_dir / "results.csv", "png": out_dir / "si_sdr_vs_overlap.png"}
    manifests = out_dir / "manifests"
    for item in report.get("items", []):
        for system, run in item.get("systems", {}).items():
            manifest = run.pop("manifest", None)
            if manifest is not None:
                manifests.mkdir(exist_ok=True)
                path = manifests / f"{safe_name(item['name'])}.{system}.json"
                path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=json_default) + "\n",
                                encoding="utf-8")
                run["manifest"] = str(path.relative_to(out_dir))

    def clean(value: Any) -> Any:  # JSON has no infinities: write them as strings
        if isinstance(value, float) and not math.isfinite(value):
            return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    files["json"].write_text(json.dumps(clean(report), indent=2) + "\n", encoding="utf-8")
    write_csv(report, files["csv"])
    plot(report, files["png"])
    return files


# --------------------------------------------------------------------------------------
# command line


def register(subparsers: Any) -> None:
    """Add ``podsep eval`` to the CLI."""
    parser = subparsers.add_parser(
        "eval", help="score podsep against baselines on material with ground truth",
        description="Generate (or read) recordings with exact ground truth, run podsep and baselines side by "
                    "side, and write a table, results.json, results.csv and a plot.",
    )
    source = parser.add_argument_group("material")
    source.add_argument("--set", dest="set_dir", help="existing material: folders of mixture.wav + s0.wav..., "
                        "a stereo recording (one speaker per channel) or a folder of audio + RTTM files")
    source.add_argument("--speech-dir", help="single-speaker speech to generate conversations from "
                        "(e.g. ../shared/data/librispeech)")
    source.add_argument("--count", type=int, default=20, help="conversations to generate (default: %(default)s)")
    source.add_argument("--limit", type=int, help="read at most this many recordings of --set")
    source.add_argument("--seed", type=int, default=0, help="seed of the generated set (default: %(default)s)")
    source.add_argument("--speakers", default="2", help="speakers per conversation; a list (2,3,4) cycles")
    source.add_argument("--duration", type=float, default=60.0, help="seconds per conversation (default: %(default)s)")
    source.add_argument("--overlap-ratio", default="0.15", help="overlapped speech / speech; a list cycles")
    source.add_argument("--rate", type=int, default=16000, choices=[16000, 44100, 48000], help="output sample rate")
    source.add_argument("--reverb", choices=["none", "measured", "simulated"], default="none",
                        help="measured room responses from --rir-dir, or simulated rooms")
    source.add_argument("--rir-dir", help="folder of room impulse responses (e.g. ../shared/data/meeting-sim)")
    source.add_argument("--rir-glob", default="*rir*.wav", help="which files of --rir-dir are responses")
    source.add_argument("--noise", help="noise or music bed: a file or a folder to pick from")
    source.add_argument("--noise-snr", type=float, help="speech-to-noise ratio of the bed in dB")
    systems = parser.add_argument_group("systems")
    systems.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated (default: all: %(default)s)")
    systems.add_argument("--separator-double", metavar="small|full|DIR",
                         help="run oracle-diarization and full-file with this SepFormer instead of the configured "
                              "one: a random-weight stand-in (small/full; numbers meaningless) or a model folder")
    systems.add_argument("--models-dir", help="where random-weight stand-ins are built (default: OUT/models)")
    systems.add_argument("--known-speakers", action="store_true", help="tell podsep's diarizer the true speaker count")
    systems.add_argument("--chunk", type=float, default=30.0, help="full-file baseline: chunk seconds")
    systems.add_argument("--config", help="podsep settings YAML")
    systems.add_argument("--diarizer", choices=["auto", "pyannote", "embedded"],
                         help="podsep system: as `podsep split --diarizer` (default: auto)")
    systems.add_argument("--separator", choices=["auto", "sepformer", "embedded"],
                         help="separating systems: as `podsep split --separator` (default: auto)")
    systems.add_argument("--diarization-model", help="podsep system: pyannote pipeline (Hub id or folder)")
    systems.add_argument("--separation-model", help="SepFormer (Hub id or folder) for the separating systems")
    systems.add_argument("--device", help="auto, cpu, cuda...")
    parser.add_argument("-o", "--out", default="podsep_eval", help="output folder (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """The ``eval`` subcommand."""
    from rich.console import Console

    console = Console(stderr=True)
    out_dir = Path(args.out)
    if bool(args.set_dir) == bool(args.speech_dir):
        raise PodsepError("give either --set DIR (existing material) or --speech-dir DIR (generate a set)")
    if args.count < 1:
        raise PodsepError("--count must be at least 1")
    began = time.perf_counter()
    if args.set_dir:
        items = read_set(args.set_dir, args.limit)
        material = {"kind": "set", "path": str(args.set_dir)}
    else:
        set_dir = out_dir / "set"
        if not args.quiet:
            console.print(f"generating {args.count} conversation(s) into {set_dir}")
        items = generate_items(args, set_dir)
        material = {"kind": "generated", "path": str(set_dir), "speech_dir": args.speech_dir, "count": args.count,
                    "seed": args.seed, "speakers": args.speakers, "duration": args.duration,
                    "overlap_ratio": args.overlap_ratio, "rate": args.rate, "reverb": args.reverb,
                    "rir_dir": args.rir_dir, "noise": args.noise, "noise_snr": args.noise_snr}
    overrides = {key: value for key, value in (
        ("diarization.model", args.diarization_model), ("separation.model", args.separation_model),
        ("diarization.backend", args.diarizer), ("separation.backend", args.separator),
        ("device", args.device)) if value is not None}
    options = EvalOptions(
        config=args.config, overrides=overrides, separator_double=args.separator_double,
        models_dir=Path(args.models_dir) if args.models_dir else out_dir / "models", chunk=args.chunk,
        known_speakers=args.known_speakers,
    )
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    progress = None if args.quiet else (lambda line: console.print(f"  {line}", highlight=False))
    report = evaluate(items, systems, options, progress)
    report["material"] = material
    report["command"] = "podsep " + " ".join(sys.argv[1:]) if sys.argv and "podsep" in sys.argv[0] else None
    report["environment"] = {"python": platform.python_version(), "platform": platform.platform(),
                             "cpus": os.cpu_count(), "seconds": round(time.perf_counter() - began, 1)}
    files = write_outputs(report, out_dir)
    print_table(report)
    if not args.quiet:
        console.print("written: " + ", ".join(str(p) for p in files.values()))
    return 0


__all__ = [
    "SYSTEMS", "EvalOptions", "Item", "PeakMemory", "evaluate", "generate_items", "markdown_table", "read_set",
    "register", "run_eval", "score_item", "simulated_rirs", "summarise", "turns_from_tracks", "write_outputs",
]

