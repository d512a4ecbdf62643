"""Synthetic podcast-like conversations with exact ground truth.

podsep has to be judged on recordings where we know, sample for sample, what each
speaker contributed. This module mixes real single-speaker speech (LibriSpeech-style
files) into conversations with turn-taking, pauses, backchannels, interruptions and
occasional longer cross-talk, and keeps everything needed to score the result:
the mixture, one reference track per speaker, the noise, and the turns.

Guarantees (each one is checked by ``tests/lab/test_synth.py``):

* Every turn boundary lies on a 10 ms grid, so the 3 decimals of an RTTM file are
  exact and every boundary is a whole sample at any rate that is a multiple of
  100 Hz (16000, 44100, 48000, ...).
* A turn is exactly the extent of one placed excerpt of a source utterance. A
  speaker's reference track is exactly zero outside that speaker's turns (with or
  without reverb: the reverberant image is cut at the turn end, see below).
* ``mixture == sum(references in diarization.speakers order) + noise``, summed in
  float32 in that order, so the identity holds bit for bit; nothing exceeds
  ``spec.peak_limit`` (the whole conversation is scaled down together if needed).
* The same seed, spec and speech folder give identical output. The turn layout
  depends only on the seed and the layout settings: changing the sample rate,
  reverb or noise does not move a single turn.
* The speakers of one conversation are different source speakers (speaker id =
  the file-name prefix before the first ``-``, as in LibriSpeech).
* Overlaps are podcast-like: every overlap starts while another speaker is
  already talking and has at least ``spec.min_solo`` seconds of single-speaker
  speech right before and right after it; never more than two people talk at
  once. The achieved overlap ratio is steered to ``spec.overlap_ratio``.
* With ``spec.unique_overlaps``, words heard in an overlap are never heard
  alone anywhere in the conversation: each speaker's utterances are split into
  a solo pool and an overlap reserve (disjoint files), the layout is made from
  the solo pool, and every overlapped stretch of a turn is then filled with
  speech from the reserve. A model that learns from the conversation's own
  solo speech (podsep's adaptation) can then be scored without having heard
  its test words alone. Such a turn is one excerpt of the solo pool with its
  overlapped stretches spliced in (5 ms fades at each splice), so "a turn is
  exactly one placed excerpt" holds only without this option.

Reverb: each speaker gets one measured room impulse response. The RIR is
aligned so that its direct-path peak is at lag 0 (the image is not delayed against
the turn; the few samples before the peak are kept as a non-causal part) and
scaled to unit energy at its own rate. Its tail would ring past the end of the
turn; it is cut at the turn end with a 5 ms fade, so the RTTM still means "this
speaker's signal is non-zero exactly here" for reverberant conversations too. The
cut removes at most the RIR's length (about 170 ms for the shared meeting RIRs)
of decaying reverberation.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

from ..diarization import Diarization
from ..errors import InputError, OutputError

FRAMES_PER_SECOND = 100  # the 10 ms grid every boundary lies on
FADE_SECONDS = 0.005  # fade applied inside a turn at every cut end
AUDIO_SUFFIXES = (".flac", ".wav")
MAX_RIR_SECONDS = 5.0  # longer files are not impulse responses (protects against a wrong glob)
_SILENCE_RANGE_DB = 35.0  # frames this far below the loud frames count as silence
_CUT_SEARCH_SECONDS = 0.8  # how far from the wished turn end a quieter cut point is looked for
_RESAMPLE_CONTEXT_FRAMES = 1  # source context around an excerpt so resampling has no edge effect


def _frames(seconds: float) -> int:
    return int(round(seconds * FRAMES_PER_SECOND))


@dataclass(frozen=True)
class ConversationSpec:
    """Every knob of a generated conversation; the defaults sound like a podcast.

    Durations are in seconds, ranges are ``(low, high)`` drawn uniformly, all of
    them snapped to the 10 ms grid.

    * ``duration``: approximate length; the last turn ends near it, a pause follows.
    * ``overlap_ratio``: target overlapped speech time / speech time (see
      :meth:`Conversation.overlap_ratio`); met within about ±0.02 for 60 s.
    * ``turn_duration``: length of a floor turn (one excerpt of one utterance; shorter
      when the source utterances are shorter). ``pause_duration``: silence between
      turns that do not overlap, also before the first and after the last.
    * ``min_solo``: single-speaker speech guaranteed right before and after every
      overlap, so each overlapped region has a solo neighbour on both sides.
    * ``speech_level_dbfs``: RMS of active speech of every utterance before the
      speaker gain; ``speaker_gain_db``: each speaker's gain, drawn once.
    * ``reverb``/``rir_glob``: convolve each speaker with one RIR from the files in
      ``rir_dir`` matching the glob. ``noise_snr``: add noise at this SNR (dB).
    * ``peak_limit``: if any sample of the mixture or a track would exceed it,
      everything (tracks, noise, mixture) is scaled down together.
    * ``unique_overlaps``: overlapped words are never also heard alone (see the
      module's guarantees); ``overlap_reserve`` is the share of each speaker's
      speech (whole utterances, at least one) set aside for overlaps then, and
      ``reserve_seed`` (default: the conversation's seed) chooses it: episodes
      of the same voices that share it keep each other's overlapped words
      unheard too (a model adapted on one can be scored on the next).

    The overlap target is met with three kinds of overlap, each taking the given
    share of the overlapped *time*:

    * backchannel: a short excerpt (``backchannel_duration``) by a listener inside
      the current speaker's turn; the current speaker goes on.
    * interruption: the next speaker starts ``interruption_duration`` before the
      current one stops (the floor changes hands under overlap).
    * crosstalk: the same as an interruption but longer (``crosstalk_duration``).
    """

    num_speakers: int = 2
    duration: float = 60.0
    sample_rate: int = 16000
    overlap_ratio: float = 0.15
    backchannel_share: float = 0.3
    interruption_share: float = 0.5
    crosstalk_share: float = 0.2
    backchannel_duration: tuple[float, float] = (0.3, 1.0)
    interruption_duration: tuple[float, float] = (1.0, 3.0)
    crosstalk_duration: tuple[float, float] = (3.0, 6.0)
    turn_duration: tuple[float, float] = (2.0, 12.0)
    pause_duration: tuple[float, float] = (0.1, 0.8)
    min_solo: float = 0.5
    speech_level_dbfs: float = -26.0
    speaker_gain_db: tuple[float, float] = (-3.0, 3.0)
    reverb: bool = False
    rir_glob: str = "*.wav"
    noise_snr: float | None = None
    peak_limit: float = 0.99
    unique_overlaps: bool = False
    overlap_reserve: float = 0.3
    reserve_seed: int | None = None

    def __post_init__(self) -> None:
        # Tuples may arrive as lists (e.g. from JSON); keep the dataclass hashable.
        for name in ("backchannel_duration", "interruption_duration", "crosstalk_duration",
                     "turn_duration", "pause_duration", "speaker_gain_db"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value}")
            object.__setattr__(self, name, value)
        if self.num_speakers < 1:
            raise ValueError("num_speakers must be at least 1")
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.sample_rate <= 0 or self.sample_rate % FRAMES_PER_SECOND:
            raise ValueError("sample_rate must be a multiple of 100 Hz (10 ms must be whole samples)")
        if not 0.0 <= self.overlap_ratio < 1.0:
            raise ValueError("overlap_ratio must be in [0, 1)")
        shares = (self.backchannel_share, self.interruption_share, self.crosstalk_share)
        if min(shares) < 0 or sum(shares) <= 0:
            raise ValueError("overlap shares must be non-negative and not all zero")
        for name in ("backchannel_duration", "interruption_duration", "crosstalk_duration", "turn_duration"):
            if getattr(self, name)[0] < 1.0 / FRAMES_PER_SECOND:
                raise ValueError(f"{name} must be at least 10 ms")
        if self.pause_duration[0] < 0:
            raise ValueError("pause_duration must not be negative")
        if self.min_solo < 1.0 / FRAMES_PER_SECOND:
            raise ValueError("min_solo must be at least 10 ms")
        if not 0 < self.peak_limit <= 1.0:
            raise ValueError("peak_limit must be in (0, 1]")
        if not 0.0 < self.overlap_reserve < 1.0:
            raise ValueError("overlap_reserve must be in (0, 1)")


@dataclass
class Conversation:
    """A generated conversation and its exact ground truth."""

    mixture: np.ndarray
    references: dict[str, np.ndarray]
    noise: np.ndarray | None
    sample_rate: int
    diarization: Diarization
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.mixture.shape[0])

    def overlap_ratio(self) -> float:
        """Overlapped speech time (two or more talk) over speech time (one or more talk)."""
        return overlap_ratio_of(self.diarization)

    def write(self, folder: Path, *, overwrite: bool = False) -> None:
        """Write ``mixture.wav``, ``s0.wav``... (diarization.speakers order), ``noise.wav``,
        ``reference.rttm`` and ``meta.json`` into ``folder``.

        WAV files are 32-bit float so the mixture identity survives the round trip.
        An existing conversation in ``folder`` is only replaced with ``overwrite``.
        """
        folder = Path(folder)
        if (folder / "mixture.wav").exists():
            if not overwrite:
                raise OutputError(f"{folder} already holds a conversation; pass overwrite=True to replace it")
            for stale in folder.iterdir():
                if re.fullmatch(r"s\d+\.wav|noise\.wav|mixture\.wav|reference\.rttm|meta\.json", stale.name):
                    stale.unlink()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / "mixture.wav", self.mixture, self.sample_rate, subtype="FLOAT")
            track_files = {}
            for index, speaker in enumerate(self.diarization.speakers):
                name = f"s{index}.wav"
                sf.write(folder / name, self.references[speaker], self.sample_rate, subtype="FLOAT")
                track_files[name] = speaker
            if self.noise is not None:
                sf.write(folder / "noise.wav", self.noise, self.sample_rate, subtype="FLOAT")
            (folder / "reference.rttm").write_text(self.diarization.to_rttm(), encoding="utf-8")
            meta = dict(self.metadata)
            meta["files"] = {"mixture": "mixture.wav", "tracks": track_files,
                             "noise": "noise.wav" if self.noise is not None else None,
                             "rttm": "reference.rttm"}
            meta["overlap_ratio"] = self.overlap_ratio()
            (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"cannot write conversation to {folder}: {error}") from error


def overlap_ratio_of(diarization: Diarization) -> float:
    """Fraction of speech time during which two or more speakers talk (0 without speech)."""
    events = sorted([(t.start, 1) for t in diarization.turns] + [(t.end, -1) for t in diarization.turns])
    speech = overlap = 0.0
    active = 0
    previous_time = 0.0
    for time_point, change in events:
        if active >= 1:
            speech += time_point - previous_time
        if active >= 2:
            overlap += time_point - previous_time
        active += change
        previous_time = time_point
    return overlap / speech if speech > 0 else 0.0


# --------------------------------------------------------------------------------------
# speech sources


@dataclass
class _Utterance:
    """Analysis of one source file on the 10 ms grid (the audio itself is read on demand)."""

    path: Path
    speaker: str
    sample_rate: int
    num_frames: int
    voiced: np.ndarray  # (num_frames,) bool: frame is speech, not silence
    cut_cost: np.ndarray  # (num_frames + 1,) energy around each frame boundary: low = good place to cut
    active_rms: float  # RMS over voiced frames, for level normalisation
    first_voiced: int
    end_voiced: int  # one past the last voiced frame


class _SpeechPool:
    """The speech folder: who is in it, and lazily analysed utterances (cached for a whole set)."""

    def __init__(self, speech_dir: Path) -> None:
        self.root = Path(speech_dir)
        if not self.root.is_dir():
            raise InputError(f"speech folder {self.root} does not exist")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        self.files_by_speaker: dict[str, list[Path]] = {}
        for path in files:
            self.files_by_speaker.setdefault(path.stem.split("-")[0], []).append(path)
        if not self.files_by_speaker:
            raise InputError(f"no .flac or .wav speech files under {self.root}")
        self._analysed: dict[Path, _Utterance] = {}

    @property
    def speakers(self) -> list[str]:
        return sorted(self.files_by_speaker)

    def utterance(self, path: Path) -> _Utterance:
        if path not in self._analysed:
            self._analysed[path] = self._analyse(path)
        return self._analysed[path]

    def _analyse(self, path: Path) -> _Utterance:
        audio, rate = _read_mono(path)
        if rate % FRAMES_PER_SECOND:
            raise InputError(f"{path}: sample rate {rate} Hz is not a multiple of 100 Hz")
        frame = rate // FRAMES_PER_SECOND
        num_frames = len(audio) // frame
        power = (audio[: num_frames * frame].astype(np.float64).reshape(num_frames, frame) ** 2).mean(axis=1)
        level_db = 10.0 * np.log10(power + 1e-12)
        if num_frames == 0 or not np.any(power > 0):
            voiced = np.zeros(num_frames, dtype=bool)
        else:
            loud = np.percentile(level_db, 99)
            floor = np.percentile(level_db, 5)
            # Adaptive: noisy recordings have a high floor, clean ones a very low one.
            threshold = max(floor + 0.35 * (loud - floor), loud - _SILENCE_RANGE_DB)
            voiced = level_db > threshold
        # Energy around a boundary = mean of the two frames on each side; the file ends cost nothing.
        padded = np.concatenate([[-120.0, -120.0], level_db, [-120.0, -120.0]])
        cut_cost = np.convolve(padded, np.ones(4) / 4, mode="valid")
        indices = np.flatnonzero(voiced)
        first, end = (int(indices[0]), int(indices[-1]) + 1) if len(indices) else (0, 0)
        active_rms = float(np.sqrt(power[voiced].mean())) if len(indices) else 0.0
        return _Utterance(path, path.stem.split("-")[0], rate, num_frames, voiced, cut_cost, active_rms,
                          first, end)

    def read(self, utterance: _Utterance, start_frame: int, end_frame: int, sample_rate: int) -> np.ndarray:
        """Frames ``[start, end)`` of an utterance at ``sample_rate`` (float64, exact length)."""
        source_frame = utterance.sample_rate // FRAMES_PER_SECOND
        context = _RESAMPLE_CONTEXT_FRAMES
        lo = max(0, start_frame - context)
        hi = min(utterance.num_frames, end_frame + context)
        audio, _ = _read_mono(utterance.path, lo * source_frame, hi * source_frame)
        audio = audio.astype(np.float64)
        out_frame = sample_rate // FRAMES_PER_SECOND
        if sample_rate != utterance.sample_rate:
            divisor = math.gcd(sample_rate, utterance.sample_rate)
            audio = resample_poly(audio, sample_rate // divisor, utterance.sample_rate // divisor)
        first = (start_frame - lo) * out_frame
        return audio[first: first + (end_frame - start_frame) * out_frame]


def _read_mono(path: Path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as error:
        raise InputError(f"cannot read audio file {path}: {error}") from error
    return audio.mean(axis=1), int(rate)


@dataclass
class _Excerpt:
    utterance: _Utterance
    start: int  # frames within the utterance
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


class _SpeakerStream:
    """One speaker's speech, consumed front to back so excerpts repeat as late as possible.

    Excerpts end at the quietest boundary near the wished length (a pause between
    words when there is one) and are trimmed of leading/trailing silence, so a turn
    starts and ends with speech.
    """

    def __init__(self, pool: _SpeechPool, speaker: str, rng: np.random.Generator,
                 files: list[Path] | None = None) -> None:
        self.pool = pool
        self.files = pool.files_by_speaker[speaker] if files is None else files
        self.rng = rng
        self.order = list(rng.permutation(len(self.files)))
        self.position = 0  # index into order
        self.cursor = 0  # frame within the current utterance
        self._longest: int | None = None

    def _advance(self) -> None:
        self.position += 1
        self.cursor = 0
        if self.position >= len(self.order):
            # Used up: start again in a new order, at a random place, so repeats differ.
            self.order = list(self.rng.permutation(len(self.files)))
            self.position = 0
            first = self.pool.utterance(self.files[self.order[0]])
            self.cursor = int(self.rng.integers(first.first_voiced, max(first.first_voiced, first.end_voiced // 2) + 1))

    def longest(self) -> int:
        if self._longest is None:
            self._longest = max(self.pool.utterance(p).end_voiced - self.pool.utterance(p).first_voiced
                                for p in self.files)
        return self._longest

    def take(self, wished: int, shortest: int, longest: int) -> _Excerpt:
        """An excerpt of ``shortest..longest`` frames, close to ``wished`` frames long."""
        shortest = max(1, shortest)
        longest = max(shortest, longest)
        failures = 0
        while True:
            utterance = self.pool.utterance(self.files[self.order[self.position]])
            start = max(self.cursor, utterance.first_voiced)
            if utterance.end_voiced - start >= shortest:
                excerpt = self._cut(utterance, start, wished, shortest, longest)
                if excerpt is not None:
                    return excerpt
            else:
                self._advance()
            failures += 1
            if failures > 2 * len(self.files) + 20:
                # Nothing this long exists for this speaker: settle for what there is.
                shortest = min(shortest, max(1, self.longest()))
                longest = max(shortest, longest)
            if failures > 8 * len(self.files) + 100:
                raise InputError(f"speaker {utterance.speaker} has no usable speech in {self.pool.root}")

    def _cut(self, utterance: _Utterance, start: int, wished: int, shortest: int, longest: int) -> _Excerpt | None:
        lo = start + shortest
        hi = min(start + longest, utterance.end_voiced)
        if hi <= lo:
            end = hi
        else:
            search = _frames(_CUT_SEARCH_SECONDS)
            target = start + wished
            window_lo, window_hi = max(lo, target - search), min(hi, target + search)
            if window_lo > window_hi:
                window_lo, window_hi = lo, hi
            end = window_lo + int(np.argmin(utterance.cut_cost[window_lo: window_hi + 1]))
        self.cursor = end
        if end >= utterance.end_voiced:
            self._advance()
        voiced = np.flatnonzero(utterance.voiced[start:end])
        if len(voiced) == 0:
            return None
        # Keep one frame of margin so onsets and decays are not clipped.
        first = max(start, start + int(voiced[0]) - 1)
        last = min(end, start + int(voiced[-1]) + 2)
        if last - first < shortest:
            return None
        return _Excerpt(utterance, first, last)


# --------------------------------------------------------------------------------------
# layout: who speaks when, on the 10 ms grid


@dataclass
class _Placement:
    speaker: str
    kind: str  # "turn", "interruption", "crosstalk" or "backchannel"
    start: int  # frame in the conversation
    excerpt: _Excerpt

    @property
    def end(self) -> int:
        return self.start + self.excerpt.length


def _uniform_frames(rng: np.random.Generator, bounds: tuple[float, float]) -> int:
    return int(rng.integers(_frames(bounds[0]), _frames(bounds[1]) + 1))


def _plan(spec: ConversationSpec, speakers: list[str], streams: dict[str, _SpeakerStream],
          rng: np.random.Generator) -> tuple[list[_Placement], int]:
    """Lay out floor turns (with interruptions and cross-talk), then backchannels.

    Returns the placements and the conversation length in frames.
    """
    shares = np.array([spec.backchannel_share, spec.interruption_share, spec.crosstalk_share], dtype=float)
    share_backchannel, share_interruption, share_crosstalk = shares / shares.sum()
    ratio = spec.overlap_ratio if len(speakers) > 1 else 0.0
    min_solo = _frames(spec.min_solo)
    turn_lo, turn_hi = _frames(spec.turn_duration[0]), _frames(spec.turn_duration[1])
    total = _frames(spec.duration)
    expected_speech = 0.9 * total  # pauses take roughly a tenth of a podcast

    floor: list[_Placement] = []
    head_overlap: list[int] = []  # per floor turn: frames overlapped with the previous turn
    speech = 0  # union of speech so far, frames
    used = {"interruption": 0, "crosstalk": 0}
    current = speakers[int(rng.integers(len(speakers)))]
    start = _uniform_frames(rng, spec.pause_duration)
    while True:
        overlap_kind, overlap = "turn", 0
        if floor:
            others = [s for s in speakers if s != floor[-1].speaker] or speakers
            current = others[int(rng.integers(len(others)))]
            previous = floor[-1]
            previous_solo = previous.excerpt.length - head_overlap[-1]
            pause = max(_uniform_frames(rng, spec.pause_duration), 1 if current == previous.speaker else 0)
            start = previous.end + pause
            # Steer the transition overlaps to their share of the target, spread over time.
            projected = speech + (turn_lo + turn_hi) // 2
            for kind, share, bounds in (("crosstalk", share_crosstalk, spec.crosstalk_duration),
                                        ("interruption", share_interruption, spec.interruption_duration)):
                deficit = share * ratio * projected - used[kind]
                left = share * ratio * expected_speech - used[kind]
                shortest, mean_length = _frames(bounds[0]), _frames(sum(bounds) / 2)
                # Never overshoot the kind's share by more than half its shortest event
                # (backchannels, placed last, make up the exact remainder).
                wanted = min(_uniform_frames(rng, bounds), max(shortest, int(left)))
                if (rng.random() < deficit / mean_length and left >= shortest / 2
                        and wanted <= previous_solo - min_solo and current != previous.speaker):
                    overlap_kind, overlap = kind, wanted
                    break
        remaining = total - start
        if floor and remaining < turn_lo // 2:
            break
        wished = min(_uniform_frames(rng, spec.turn_duration), max(remaining + overlap, turn_lo))
        wished = max(wished, overlap + min_solo + turn_lo // 2) if overlap else wished
        excerpt = streams[current].take(wished, min(turn_lo, wished), max(turn_hi, wished))
        if overlap:
            overlap = min(overlap, excerpt.length - min_solo)
            low_bound = spec.crosstalk_duration[0] if overlap_kind == "crosstalk" else spec.interruption_duration[0]
            if overlap < _frames(low_bound):
                if overlap_kind == "crosstalk" and overlap >= _frames(spec.interruption_duration[0]):
                    # The new turn is too short for cross-talk: make it an interruption.
                    overlap_kind, overlap = "interruption", min(overlap, _frames(spec.interruption_duration[1]))
                else:
                    overlap_kind, overlap = "turn", 0
            if overlap:
                used[overlap_kind] += overlap
                start = floor[-1].end - overlap
        floor.append(_Placement(current, overlap_kind, start, excerpt))
        head_overlap.append(overlap)
        speech += excerpt.length - overlap
    conversation_end = max(p.end for p in floor) + _uniform_frames(rng, spec.pause_duration)

    # Backchannels fill the rest of the overlap target inside single-speaker stretches.
    solo_stretches: list[tuple[int, int, str]] = []
    for index, turn in enumerate(floor):
        tail = head_overlap[index + 1] if index + 1 < len(floor) else 0
        solo_stretches.append((turn.start + head_overlap[index], turn.end - tail, turn.speaker))
    budget = int(round(ratio * speech)) - used["interruption"] - used["crosstalk"]
    backchannel_lo, backchannel_hi = _frames(spec.backchannel_duration[0]), _frames(spec.backchannel_duration[1])
    backchannels: list[_Placement] = []
    while budget >= max(1, backchannel_lo // 2) and len(speakers) > 1:
        room = [(b - a) - 2 * min_solo for a, b, _ in solo_stretches]
        largest = max(room, default=0)
        if largest < backchannel_lo:
            break
        wished = min(_uniform_frames(rng, spec.backchannel_duration), max(budget, backchannel_lo), largest)
        # The speaker is chosen after the slot, but the excerpt length must fit the largest slot.
        slots = np.array([max(0, r - wished + 1) for r in room], dtype=float)
        chosen = int(rng.choice(len(solo_stretches), p=slots / slots.sum()))
        a, b, floor_speaker = solo_stretches[chosen]
        listeners = [s for s in speakers if s != floor_speaker]
        listener = listeners[int(rng.integers(len(listeners)))]
        excerpt = streams[listener].take(wished, min(backchannel_lo, wished), min(backchannel_hi, room[chosen]))
        length = excerpt.length
        position = int(rng.integers(a + min_solo, b - min_solo - length + 1))
        backchannels.append(_Placement(listener, "backchannel", position, excerpt))
        solo_stretches[chosen: chosen + 1] = [(a, position, floor_speaker), (position + length, b, floor_speaker)]
        budget -= length
    return floor + backchannels, conversation_end


# --------------------------------------------------------------------------------------
# overlaps from a reserve (``spec.unique_overlaps``)


def _split_for_overlaps(pool: _SpeechPool, speaker: str, share: float,
                        rng: np.random.Generator) -> tuple[list[Path], list[Path]]:
    """A speaker's files as (solo pool, overlap reserve): disjoint, the reserve holding about ``share``
    of their voiced speech (at least one file, and at least one file left for solo speech)."""
    files = pool.files_by_speaker[speaker]
    if len(files) < 2:
        raise InputError(f"unique_overlaps needs at least two utterances per speaker; {speaker} has "
                         f"{len(files)} in {pool.root}")
    voiced = {path: int(pool.utterance(path).voiced.sum()) for path in files}
    total = sum(voiced.values())
    reserve: list[Path] = []
    for index in rng.permutation(len(files)):
        if len(reserve) == len(files) - 1 or (reserve and sum(voiced[p] for p in reserve) >= share * total):
            break
        reserve.append(files[int(index)])
    return [p for p in files if p not in reserve], sorted(reserve)


class _ReserveStream:
    """A speaker's overlap reserve, read front to back in exact lengths (repeats only ever land in overlaps)."""

    def __init__(self, pool: _SpeechPool, files: list[Path]) -> None:
        self.utterances = [pool.utterance(p) for p in files]
        self.utterances = [u for u in self.utterances if u.end_voiced > u.first_voiced]
        if not self.utterances:
            raise InputError("the overlap reserve holds no speech")
        self.position = 0
        self.cursor = self.utterances[0].first_voiced

    def take(self, length: int) -> _Excerpt:
        """Exactly ``length`` frames, starting at speech (from the start of voiced speech when one
        utterance's voiced part is shorter than that)."""
        for _ in range(2 * len(self.utterances) + 1):
            utterance = self.utterances[self.position]
            if self.cursor + length <= utterance.end_voiced:
                excerpt = _Excerpt(utterance, self.cursor, self.cursor + length)
                self.cursor += length
                return excerpt
            self.position = (self.position + 1) % len(self.utterances)
            self.cursor = self.utterances[self.position].first_voiced
        longest = max(self.utterances, key=lambda u: u.num_frames - u.first_voiced)
        start = max(0, min(longest.first_voiced, longest.num_frames - length))
        if start + length > longest.num_frames:
            raise InputError(f"no reserve utterance of {longest.speaker} holds {length / FRAMES_PER_SECOND:.2f} s")
        return _Excerpt(longest, start, start + length)


def _overlap_splices(placements: list[_Placement], reserves: dict[str, "_ReserveStream"],
                     total_frames: int) -> dict[int, list[tuple[int, _Excerpt]]]:
    """For each placement (by ``id``), its overlapped stretches as (offset in frames, reserve excerpt)."""
    speakers = sorted({p.speaker for p in placements})
    active = {s: np.zeros(total_frames + 1, dtype=np.int32) for s in speakers}
    for p in placements:
        active[p.speaker][p.start:p.end] += 1
    splices: dict[int, list[tuple[int, _Excerpt]]] = {}
    for p in sorted(placements, key=lambda q: (q.start, q.speaker)):
        others = sum((active[s][p.start:p.end] for s in speakers if s != p.speaker),
                     np.zeros(p.end - p.start, dtype=np.int32)) > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], others.astype(np.int8), [0]])))
        runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
        if runs:
            splices[id(p)] = [(a, reserves[p.speaker].take(b - a)) for a, b in runs]
    return splices


# --------------------------------------------------------------------------------------
# rendering


def _fade(signal: np.ndarray, sample_rate: int, at_start: bool = True, at_end: bool = True) -> None:
    length = min(int(round(FADE_SECONDS * sample_rate)), len(signal) // 2)
    if length <= 0:
        return
    ramp = np.sin(0.5 * np.pi * np.arange(1, length + 1) / (length + 1)) ** 2
    if at_start:
        signal[:length] *= ramp
    if at_end:
        signal[-length:] *= ramp[::-1]


def _load_rirs(rir_dir: Path, pattern: str, sample_rate: int) -> tuple[list[np.ndarray], list[Path]]:
    """Room impulse responses at ``sample_rate``, direct-path peak exactly one grid frame in.

    Everything is shaped at the file's own rate: the direct path is put at lag 10 ms
    (zeros in front, or earlier samples dropped) and the energy set to 1 there;
    after resampling the taps are scaled by the rate ratio, so the filter has the
    same frequency response and the reverberant speech the same level at every
    output rate.
    """
    paths = sorted(p for p in Path(rir_dir).glob(pattern) if p.is_file())
    if not paths:
        raise InputError(f"no room impulse responses matching '{pattern}' in {rir_dir}")
    rirs = []
    for path in paths:
        response, rate = _read_mono(path)
        if len(response) > MAX_RIR_SECONDS * rate:
            raise InputError(f"{path} is {len(response) / rate:.1f} s long, not a room impulse response; "
                             f"narrow rir_glob")
        if rate % FRAMES_PER_SECOND:
            raise InputError(f"{path}: sample rate {rate} Hz is not a multiple of 100 Hz")
        response = response.astype(np.float64)
        energy = float(np.sqrt(np.sum(response ** 2)))
        if energy == 0:
            raise InputError(f"{path} is silent")
        lead = rate // FRAMES_PER_SECOND
        peak = int(np.argmax(np.abs(response)))
        response = np.concatenate([np.zeros(max(0, lead - peak)), response[max(0, peak - lead):]]) / energy
        if rate != sample_rate:
            divisor = math.gcd(rate, sample_rate)
            # A filter's taps add up per sample: at a higher rate there are more of them
            # per second, so scale by the rate ratio to keep the same frequency response.
            response = resample_poly(response, sample_rate // divisor, rate // divisor) * (rate / sample_rate)
        rirs.append(response)
    return rirs, paths


def _load_noise(noise_path: Path, num_samples: int, sample_rate: int,
                rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    noise_path = Path(noise_path)
    if noise_path.is_dir():
        candidates = sorted(p for p in noise_path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not candidates:
            raise InputError(f"no noise files in {noise_path}")
        path = candidates[int(rng.integers(len(candidates)))]
    else:
        path = noise_path
    noise, rate = _read_mono(path)
    noise = noise.astype(np.float64)
    if rate != sample_rate:
        divisor = math.gcd(rate, sample_rate)
        noise = resample_poly(noise, sample_rate // divisor, rate // divisor)
    if len(noise) == 0 or not np.any(noise):
        raise InputError(f"noise file {path} is empty or silent")
    offset = int(rng.integers(len(noise)))
    repeats = -(-(offset + num_samples) // len(noise))
    noise = np.tile(noise, repeats)[offset: offset + num_samples]
    return noise, {"file": str(path), "offset_seconds": offset / sample_rate}


def generate_conversation(speech_dir: Path, spec: ConversationSpec, seed: int, *,
                          rir_dir: Path | None = None, noise_path: Path | None = None,
                          uri: str = "conversation") -> Conversation:
    """Generate one conversation from the speech in ``speech_dir`` (searched recursively).

    ``rir_dir`` (files matching ``spec.rir_glob``) is needed when ``spec.reverb``;
    ``noise_path`` (a file, or a folder to pick one from) when ``spec.noise_snr`` is
    set. The noise SNR is the mean power of the summed references over the samples
    where someone speaks, against the mean noise power.
    """
    return _generate(_SpeechPool(Path(speech_dir)), spec, seed, rir_dir=rir_dir, noise_path=noise_path, uri=uri)


def _generate(pool: _SpeechPool, spec: ConversationSpec, seed: int, *, rir_dir: Path | None,
              noise_path: Path | None, uri: str) -> Conversation:
    if spec.reverb and rir_dir is None:
        raise ValueError("spec.reverb needs rir_dir")
    if spec.noise_snr is not None and noise_path is None:
        raise ValueError("spec.noise_snr needs noise_path")
    if len(pool.speakers) < spec.num_speakers:
        raise InputError(f"{pool.root} has {len(pool.speakers)} speakers, {spec.num_speakers} needed")
    # Independent streams: toggling reverb/noise or the rate never moves a turn.
    layout_rng, level_rng, room_rng, noise_rng = (np.random.default_rng(s)
                                                 for s in np.random.SeedSequence(seed).spawn(4))
    chosen = layout_rng.choice(len(pool.speakers), size=spec.num_speakers, replace=False)
    speakers = [pool.speakers[int(i)] for i in chosen]
    reserves: dict[str, _ReserveStream] = {}
    if spec.unique_overlaps:
        streams = {}
        split_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        for speaker in speakers:
            if spec.reserve_seed is not None:
                # Per voice, so that conversations sharing ``reserve_seed`` split each voice the same way.
                split_rng = np.random.default_rng([spec.reserve_seed, 1, zlib.crc32(speaker.encode())])
            solo_files, reserve_files = _split_for_overlaps(pool, speaker, spec.overlap_reserve, split_rng)
            streams[speaker] = _SpeakerStream(pool, speaker, layout_rng, files=solo_files)
            reserves[speaker] = _ReserveStream(pool, reserve_files)
    else:
        streams = {speaker: _SpeakerStream(pool, speaker, layout_rng) for speaker in speakers}
    placements, total_frames = _plan(spec, speakers, streams, layout_rng)
    spliced = _overlap_splices(placements, reserves, total_frames) if spec.unique_overlaps else {}

    sample_rate = spec.sample_rate
    frame = sample_rate // FRAMES_PER_SECOND
    num_samples = total_frames * frame
    gains_db = {speaker: float(level_rng.uniform(*spec.speaker_gain_db)) for speaker in speakers}
    rir_by_speaker: dict[str, np.ndarray] = {}
    rir_names: dict[str, str] = {}
    if spec.reverb:
        rirs, rir_paths = _load_rirs(Path(rir_dir), spec.rir_glob, sample_rate)  # type: ignore[arg-type]
        picks = room_rng.choice(len(rirs), size=len(speakers), replace=len(rirs) < len(speakers))
        for speaker, pick in zip(speakers, picks):
            rir_by_speaker[speaker], rir_names[speaker] = rirs[int(pick)], rir_paths[int(pick)].name

    tracks = {speaker: np.zeros(num_samples, dtype=np.float64) for speaker in speakers}
    sources = []
    target_rms = 10.0 ** (spec.speech_level_dbfs / 20.0)
    for placement in sorted(placements, key=lambda p: (p.start, p.speaker)):
        excerpt = placement.excerpt
        audio = pool.read(excerpt.utterance, excerpt.start, excerpt.end, sample_rate)
        level = excerpt.utterance.active_rms or 1.0
        audio *= target_rms / level * 10.0 ** (gains_db[placement.speaker] / 20.0)
        overlap_sources = []
        for offset, piece in spliced.get(id(placement), []):
            # An overlapped stretch of this turn: speech from the reserve, faded in and out.
            inserted = pool.read(piece.utterance, piece.start, piece.end, sample_rate)
            inserted *= target_rms / (piece.utterance.active_rms or 1.0) * 10.0 ** (gains_db[placement.speaker] / 20.0)
            first, last = offset * frame, (offset + piece.length) * frame
            _fade(inserted, sample_rate, at_start=first > 0, at_end=last < len(audio))
            if first > 0:
                _fade(audio[:first], sample_rate, at_start=False)
            if last < len(audio):
                _fade(audio[last:], sample_rate, at_end=False)
            audio[first:last] = inserted
            overlap_sources.append({
                "start": (placement.start + offset) / FRAMES_PER_SECOND,
                "end": (placement.start + offset + piece.length) / FRAMES_PER_SECOND,
                "source": piece.utterance.path.relative_to(pool.root).as_posix(),
                "source_start": piece.start / FRAMES_PER_SECOND, "source_end": piece.end / FRAMES_PER_SECOND})
        _fade(audio, sample_rate)
        if placement.speaker in rir_by_speaker:
            # The direct path sits one frame into the RIR: read the image from there so it is
            # aligned with the dry excerpt, and cut it (with a fade) at the turn's ends.
            audio = fftconvolve(audio, rir_by_speaker[placement.speaker])[frame: frame + len(audio)]
            _fade(audio, sample_rate)
        first = placement.start * frame
        tracks[placement.speaker][first: first + len(audio)] += audio
        sources.append({
            "speaker": placement.speaker, "kind": placement.kind,
            "start": placement.start / FRAMES_PER_SECOND, "end": placement.end / FRAMES_PER_SECOND,
            "source": excerpt.utterance.path.relative_to(pool.root).as_posix(),
            "source_start": excerpt.start / FRAMES_PER_SECOND, "source_end": excerpt.end / FRAMES_PER_SECOND,
        })
        if spec.unique_overlaps:
            sources[-1]["overlap_sources"] = overlap_sources

    diarization = Diarization.from_turns(
        [(p.start / FRAMES_PER_SECOND, p.end / FRAMES_PER_SECOND, p.speaker) for p in placements], uri)
    if len(diarization.turns) != len(placements):
        raise RuntimeError("internal error: turns of one speaker touch or overlap")
    order = diarization.speakers
    speech_sum = sum(tracks[s] for s in order)
    noise = None
    noise_info = None
    if spec.noise_snr is not None:
        noise, noise_info = _load_noise(Path(noise_path), num_samples, sample_rate, noise_rng)  # type: ignore[arg-type]
        active = diarization.activity(sample_rate, num_samples).any(axis=0)
        speech_power = float(np.mean(speech_sum[active] ** 2))
        noise *= math.sqrt(speech_power / (float(np.mean(noise ** 2)) * 10.0 ** (spec.noise_snr / 10.0)))
        noise_info["snr_db"] = spec.noise_snr
    mixture = speech_sum + (noise if noise is not None else 0.0)
    peak = max([float(np.max(np.abs(mixture)))] + [float(np.max(np.abs(t))) for t in tracks.values()])
    scale = min(1.0, spec.peak_limit / peak) if peak > 0 else 1.0

    references = {s: (tracks[s] * scale).astype(np.float32) for s in order}
    noise32 = (noise * scale).astype(np.float32) if noise is not None else None
    mixture32 = np.zeros(num_samples, dtype=np.float32)
    for speaker in order:
        mixture32 += references[speaker]
    if noise32 is not None:
        mixture32 += noise32

    settings = asdict(spec)
    metadata = {
        "generator": "podsep.lab.synth",
        "seed": seed,
        "uri": uri,
        "settings": settings,
        "sample_rate": sample_rate,
        "num_samples": num_samples,
        "duration": num_samples / sample_rate,
        "speech_dir": str(pool.root),
        "speakers": [{"label": s, "source_speaker": s, "gain_db": gains_db[s], "rir": rir_names.get(s)}
                     for s in order],
        "scale_db": 20.0 * math.log10(scale),
        "noise": noise_info,
        "placements": sources,
    }
    return Conversation(mixture32, references, noise32, sample_rate, diarization, metadata)


def conversation_seed(set_seed: int, index: int) -> int:
    """The seed of conversation ``index`` in a set: regenerate it alone with this seed."""
    return int(np.random.SeedSequence([set_seed, index]).generate_state(1)[0])


def generate_set(speech_dir: Path, out_dir: Path, count: int, spec: ConversationSpec, seed: int, *,
                 rir_dir: Path | None = None, noise_path: Path | None = None,
                 overwrite: bool = False) -> list[Path]:
    """Write ``count`` conversations into ``out_dir/conv_000``, ``conv_001``...

    Conversation ``i`` is ``generate_conversation(..., seed=conversation_seed(seed, i))``;
    its folder name is its URI in ``reference.rttm``.
    """
    pool = _SpeechPool(Path(speech_dir))
    folders = []
    for index in range(count):
        name = f"conv_{index:03d}"
        conversation = _generate(pool, spec, conversation_seed(seed, index), rir_dir=rir_dir,
                                 noise_path=noise_path, uri=name)
        conversation.metadata["set"] = {"seed": seed, "index": index, "count": count}
        folder = Path(out_dir) / name
        conversation.write(folder, overwrite=overwrite)
        folders.append(folder)
    return folders
