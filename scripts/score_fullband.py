#!/usr/bin/env python
"""Measure how podsep renders separated overlaps: full band, the room, the background, the seams.

Three renderings side by side, always on the reference turns (so only the
rendering differs):

* ``paste``: ``assembly.overlap_rendering: paste``, the separator's outputs
  rescaled and upsampled into the track (podsep before issue 11);
* ``duplicate``: ``overlaps.policy: duplicate``, the mixture in every active track;
* ``rebuild``: the default, the original shared between the speakers
  (``podsep/reconstruct.py``).

Tables:

1. **Full band**: inside overlapped speech, per voice: energy above the model's
   band (and above 8 kHz) relative to the reference, SI-SDR above that band, in
   the model's band, and over the full band.
   (a) 44.1 and 48 kHz two-speaker conversations built from
   ``fullband/`` (7 clean clips with content to 20 kHz; each pair becomes
   "A alone, A and B together, B alone", the references are the clips
   themselves, each trimmed at its active speech: ``CLIP_TRIM``), separated by a
   band-limited oracle at 16 kHz (the true voices as a 16 kHz model would output
   them) and by podsep's embedded separator (8 kHz);
   (b) generated 60 s LibriSpeech test-other conversations at 16 kHz separated at
   8 kHz (the embedded separator, and a band-limited 8 kHz oracle): the same
   problem one octave down.
2. **Room**: reverberant test-other conversations (the measured room responses
   of ``meeting-sim/``), references = each speaker's reverberant image: overlap
   SI-SDR per rendering, for the embedded separator, an oracle returning the
   reverberant images band-limited to 8 kHz, and an oracle returning the *dry*
   voices at full band (what SepFormer ``whamr16k`` does to a reverberant input).
3. **Identity**: ``max |tracks + background - input|`` per output format (float,
   24-bit, 16-bit), read back from the written files; against the float input
   and against the input rounded to the format.
4. **Seams**: at every switch between the original and a rebuilt (or pasted)
   window inside a track, the log-spectral distance between the 20 ms frames just
   before and just after the transition (the crossfade and the switch), against
   the same distance on the input (and on the speaker's reference) at the same
   time.

Band edges: "above the band" is every frequency at or above the model's Nyquist
(8 kHz for a 16 kHz model, 4 kHz for the 8 kHz one); "in band" (low) is below
0.95 of it, the part where ``rebuild`` keeps the model's estimate. Bands are cut
with a brick-wall filter on the whole signal's FFT, then the overlapped samples
are selected (``podsep.lab.metrics.overlap_regions_mask`` of the reference turns).

Commands (one core: about 4 to 5 minutes; ``--quick`` under one)::

    OMP_NUM_THREADS=1 PODSEP_SHARED=../shared nice -n 15 \\
        python scripts/score_fullband.py --weights /tmp/sep_dev.pt --json fullband.json
    python scripts/score_fullband.py --weights /tmp/sep_dev.pt --quick

``--pairs-only`` scores only the full-band table's ``fullband/`` pairs (the
rows a change to the tilt rule can move: their voices have about 2 s alone).
``--dev`` scores only the development set (8 conversations of train-clean-100
voices at 16 kHz, an 8 kHz model), on which the rule above the band was chosen;
``--dev-unseen`` another one, 8 conversations of voices the separator never
trained on (meeting-sim's dry sources and AMI solo speech, neither used by any
evaluation here), where the embedded model leaks as it does on new voices;
``--dev-short vctk|unseen`` 30 pairs like the full-band ones at 16 kHz (see
:func:`short_dev_cases`); ``--dev-fullband DIR`` pairs like the evaluation's at 48 and 44.1 kHz from other
full-band speech (see :func:`fullband_dev_cases`; about 12 minutes for 30 pairs);
the full-band tables (every set) add three rows: ``unfitted``, ``rebuild`` without
the fit of the predictions to the mixture above the band (as before session 10),
``unsmoothed``, ``rebuild`` with the fitted gains not smoothed over time (as in
session 10), and ``tilt``, ``rebuild`` with the rule that the per-voice regression
replaced (``podsep.reconstruct.VoiceSpectrum``).

Without ``--weights`` the shipped ``podsep/data/separator.pt`` is used. The
separator is used as given (``separation.adapt: off`` where podsep has that
setting), so that only the rendering differs between the columns; ``--adapt``
runs it as podsep's defaults do, adapted to each conversation's voices where
their solo speech allows (once per conversation, shared by every rendering).
Nothing here is tuned: the test-other and ``fullband/`` material is for
evaluation only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from podsep.lab.paths import shared_root  # noqa: E402
import podsep  # noqa: E402
from podsep.audio import resample  # noqa: E402
from podsep.diarization import Diarization  # noqa: E402
from podsep.errors import ModelError  # noqa: E402
from podsep.lab.metrics import Bands, overlap_regions_mask, si_sdr  # noqa: E402
from podsep.lab.oracle import locate_window  # noqa: E402
from podsep.lab.synth import ConversationSpec, generate_conversation  # noqa: E402

RENDERINGS = {
    "paste": {"assembly.overlap_rendering": "paste"},
    "duplicate": {"overlaps.policy": "duplicate"},
    "rebuild": {},
}
# The full-band tables also show "rebuild" with one of its parts undone, for the comparison:
# "unfitted", the predictions above the band not fitted to the mixture (before session 10),
# "unsmoothed", the fitted gains not smoothed over time (session 10), and "tilt", the rule that
# the per-voice regression replaced (reconstruct.VoiceSpectrum), and "wholefit", each window's
# estimates fitted to it over the whole band instead of the separator's own (before session 34; the
# same as rebuild for a separator without a top-octave network).
ABLATIONS = {"unfitted": {"FIT_TO_MIXTURE": False}, "unsmoothed": {"EXTENSION_FIT_SMOOTH_SECONDS": 0.0},
             "tilt": {"EXTENSION_MIN_SECONDS": math.inf}, "wholefit": {"FIT_GAINS_IN_OWN_BAND": False}}
BAND_RENDERINGS = [*RENDERINGS, *ABLATIONS]
LOW_FRACTION = 0.95  # "in band" = below this fraction of the model's Nyquist (reconstruct.BAND_MARGIN)
FRAME_SECONDS = 0.02  # seam frames
LSD_FLOOR_DB = -80.0  # spectra floored this far below the input's loudest bin at the seam
LIBRI_SEED, ROOM_SEED, FULLBAND_SEED, DEV_SEED = 5100, 5200, 5300, 500


# ------------------------------------------------------------------------------------------------
# material


@dataclass
class Case:
    """One conversation: mixture (mono or ``(channels, n)``), references per speaker (mono), turns."""

    name: str
    rate: int
    mixture: np.ndarray
    references: dict[str, np.ndarray]
    diarization: Diarization
    dry: dict[str, np.ndarray] | None = None  # the same voices without the room (room cases)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mono(self) -> np.ndarray:
        """The mono mixture exactly as podsep hands it to a separator."""
        if self.mixture.ndim == 1:
            return self.mixture
        return self.mixture.mean(axis=0, dtype=np.float64).astype(np.float32)

    @property
    def num_samples(self) -> int:
        return int(self.mixture.shape[-1])


#: How a ``fullband/`` clip is trimmed to its speech. ``active`` (since session 35): frames within
#: 15.9 dB of the clip's active speech level (the margin of ITU-T P.56's active-level measure, the
#: level found by iterating), 20 ms before the first and 200 ms (P.56's hang-over) after the last.
#: ``peak40`` (sessions 9-34): frames within 40 dB of the loudest one. The VCTK clips begin with
#: 0.5-1.3 s of breath and room noise 20-30 dB under their speech, which ``peak40`` keeps: a pair's
#: "overlap" (the end of A under the start of B) then often held one voice over the other's lead-in,
#: and the energy and seam targets were scored on a voice that was not speaking there.
CLIP_TRIMS = ("active", "peak40")
CLIP_TRIM = "active"
ACTIVE_MARGIN_DB = 15.9
HANGOVER_FRAMES = 20


def speech_frames(power: np.ndarray, trim: str) -> np.ndarray:
    """Indices of the 10 ms frames (``power``: their mean square) that count as speech under ``trim``."""
    level = 10 * np.log10(power + 1e-12)
    if trim == "peak40":
        return np.flatnonzero(level > level.max() - 40.0)
    if trim != "active":
        raise ValueError(f"unknown clip trim {trim!r}; choose from {', '.join(CLIP_TRIMS)}")
    active = power[level > level.max() - 40.0].mean()
    for _ in range(20):  # the active level and its threshold settle in a few rounds
        threshold = active * 10 ** (-ACTIVE_MARGIN_DB / 10)
        updated = power[power >= threshold].mean()
        if np.isclose(updated, active, rtol=1e-6):
            break
        active = updated
    return np.flatnonzero(power >= active * 10 ** (-ACTIVE_MARGIN_DB / 10))


def read_clip(path: Path, rate: int) -> np.ndarray:
    """A fullband clip at ``rate``, trimmed to its speech (10 ms grid, ``CLIP_TRIM``) and faded at both ends."""
    audio, native = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    frame = native // 100
    frames = audio.size // frame
    power = (audio[:frames * frame].astype(np.float64).reshape(frames, frame) ** 2).mean(axis=1)
    voiced = speech_frames(power, CLIP_TRIM)
    after = 3 if CLIP_TRIM == "peak40" else HANGOVER_FRAMES
    first, last = max(0, voiced[0] - 2), min(frames, voiced[-1] + after)
    audio = audio[first * frame:last * frame].astype(np.float64)
    if native != rate:
        audio = resample(audio, native, rate).astype(np.float64)
        audio = audio[:(audio.size // (rate // 100)) * (rate // 100)]
    fade = int(0.005 * rate)
    ramp = np.sin(0.5 * np.pi * np.arange(1, fade + 1) / (fade + 1)) ** 2
    audio[:fade] *= ramp
    audio[-fade:] *= ramp[::-1]
    active = audio[np.abs(audio) > 1e-4]
    return (audio / np.sqrt(np.mean(active ** 2))).astype(np.float64)


def pair_case(names: tuple[str, str], clips: dict[str, np.ndarray], rate: int, rng: np.random.Generator) -> Case:
    """"A alone, A and B together, B alone": 0.3 s silence, A, B enters before A ends, 0.3 s silence.

    The overlap is 40 % of the shorter clip (0.8 to 2 s); levels -26 dBFS RMS +-3 dB.
    Every boundary lies on the 10 ms grid, so the turns are exact at 44.1 and 48 kHz.
    """
    a, b = (clips[n] * 10 ** ((-26.0 + rng.uniform(-3, 3)) / 20) for n in names)
    grid = rate // 100
    overlap = int(np.clip(0.4 * min(a.size, b.size) / rate, 0.8, 2.0) * 100) * grid
    lead = 30 * grid
    b_start = lead + a.size - overlap
    length = b_start + b.size + lead
    refs = {}
    for label, voice, start in ((names[0], a, lead), (names[1], b, b_start)):
        track = np.zeros(length, np.float32)
        track[start:start + voice.size] = voice
        refs[label] = track
    turns = [(lead / rate, (lead + a.size) / rate, names[0]), (b_start / rate, (b_start + b.size) / rate, names[1])]
    mixture = refs[names[0]] + refs[names[1]]
    return Case(f"{names[0]}+{names[1]}@{rate}", rate, mixture, refs, Diarization.from_turns(turns),
                info={"overlap_seconds": overlap / rate,
                      "one_voice_fraction": one_voice_fraction(refs, b_start, lead + a.size, rate)})


#: A 50 ms frame of a labelled overlap holds "one voice" when the other is this far (dB) or more under
#: its own clip's mean level there: a pause, a breath, a lead-in, not speech over speech.
ONE_VOICE_DB = -20.0


def frame_energies(signal: np.ndarray, start: int, count: int, frame: int) -> np.ndarray:
    """Mean square of ``count`` consecutive frames of ``frame`` samples from ``start``."""
    return np.mean(np.asarray(signal, np.float64)[start:start + count * frame].reshape(count, frame) ** 2, axis=1)


def silent_frames(voice: np.ndarray, start: int, count: int, frame: int) -> np.ndarray:
    """Which of those frames hold ``voice`` ONE_VOICE_DB or more under its own clip's mean level
    (a pause, a breath, a lead-in): where another voice would be heard alone."""
    voice = np.asarray(voice, np.float64)
    level = np.mean(voice[np.abs(voice) > 1e-4] ** 2)
    return 10 * np.log10(frame_energies(voice, start, count, frame) / level + 1e-20) < ONE_VOICE_DB


def one_voice_fraction(references: dict[str, np.ndarray], start: int, end: int, rate: int) -> float:
    """The share of the labelled overlap ``[start, end)``'s 50 ms frames where one voice is
    ONE_VOICE_DB or more under its own clip's mean level (how much of the "overlap" is one voice)."""
    frame = rate // 20
    count = (end - start) // frame
    if count <= 0:
        return 0.0
    quiet = np.zeros(count, bool)
    for reference in references.values():
        quiet |= silent_frames(reference, start, count, frame)
    return float(quiet.mean())


def print_pair_overlaps(cases_by_rate: dict[int, list[Case]]) -> None:
    """How much of the pairs' labelled overlaps is really two voices (CLIP_TRIM decides it)."""
    for rate, cases in cases_by_rate.items():
        fractions = [case.info["one_voice_fraction"] for case in cases if "one_voice_fraction" in case.info]
        if fractions:
            print(f"{rate / 1000:g} kHz pairs (clips trimmed {CLIP_TRIM}): {np.mean(fractions):.0%} of the labelled "
                  f"overlaps' 50 ms frames hold one voice {-ONE_VOICE_DB:.0f} dB or more under its level "
                  f"(per pair {min(fractions):.0%}-{max(fractions):.0%})")


def fullband_cases(quick: bool) -> dict[int, list[Case]]:
    """48 kHz: every pair of the five native 48 kHz clips. 44.1 kHz: the two native 44.1 kHz clips
    together and each with every VCTK clip resampled to 44.1 kHz (content still to 20 kHz)."""
    folder = shared_root() / "data" / "fullband"
    files = {p.stem.replace("_mic1_44k", "").replace("_44k", ""): p for p in sorted(folder.iterdir())
             if p.suffix in (".wav", ".flac")}
    native = {n: sf.info(str(p)).samplerate for n, p in files.items()}
    rng = np.random.default_rng(FULLBAND_SEED)
    out: dict[int, list[Case]] = {}
    for rate in (48000, 44100):
        clips = {n: read_clip(p, rate) for n, p in files.items()}
        natives = [n for n in sorted(files) if native[n] == rate]
        others = [n for n in sorted(files) if native[n] != rate]
        pairs = list(itertools.combinations(natives, 2))
        if rate == 44100:
            pairs += [(n, o) for n in natives for o in others]
        if quick:
            pairs = pairs[:3]
        out[rate] = [pair_case(p, clips, rate, rng) for p in pairs]
    return out


FULLBAND_DEV_SEED = 9300
FULLBAND_DEV_CLIP_SECONDS = 4.0  # each voice's clip, like fullband/'s 2.2-6.4 s utterances
FULLBAND_DEV_GAP_SECONDS = 0.15  # silence between a voice's letters (session 36: --dev-gap 0, denser pairs)


def cases_by_rate_info(cases_by_rate: dict[int, list[Case]]) -> dict[str, list[dict[str, Any]]]:
    """What the ``--json`` report says about the full-band pairs: each one's name and info, per rate."""
    return {str(rate): [{"name": case.name, **case.info} for case in cases] for rate, cases in cases_by_rate.items()}


def fullband_dev_cases(root: Path, pairs_per_rate: int = 30,
                       gap_seconds: float = FULLBAND_DEV_GAP_SECONDS) -> dict[int, list[Case]]:
    """Pairs as in the evaluation (:func:`pair_case`) at 48 and 44.1 kHz, from a folder with one
    subfolder of full-band recordings per speaker (none of them evaluation material): each voice's
    clip is its recordings, trimmed, ``gap_seconds`` apart, to FULLBAND_DEV_CLIP_SECONDS.
    Single letters 0.15 s apart leave 44-54 % of an overlap's 50 ms frames to one voice; one after
    another (``gap_seconds`` 0, each letter keeping its 200 ms hang-over) 30-31 %, as the generated
    test-other conversations' overlaps (30 %) and nearer the evaluation pairs' 21-24 % (session 36).

    Made for the spoken letters of Debian's ``klettres-data`` (one voice per language, 44.1 kHz
    Ogg Vorbis; the languages whose recordings reach well above 8 kHz: de he it ml nb nds pt_BR ru
    uk hu cs tn), the only full-band speech found outside ``fullband/`` here::

        apt-get download klettres-data && dpkg-deb -x klettres-data_*.deb kl
        mkdir fbdev && for l in de he it ml nb nds pt_BR ru uk hu cs tn; do
            cp -r kl/usr/share/klettres/$l/alpha fbdev/$l; done
    """
    if not root.is_dir():
        raise SystemExit(f"{root}: no such folder (see the docstring of fullband_dev_cases for how to make one)")
    speakers = sorted(p for p in root.iterdir() if p.is_dir())
    if len(speakers) < 2:
        raise SystemExit(f"{root}: needs a subfolder of recordings per speaker (two at least)")
    rng = np.random.default_rng(FULLBAND_DEV_SEED)
    all_pairs = list(itertools.combinations([p.name for p in speakers], 2))
    chosen = [all_pairs[i] for i in sorted(rng.choice(len(all_pairs), min(pairs_per_rate, len(all_pairs)),
                                                      replace=False))]
    out: dict[int, list[Case]] = {}
    for rate in (48000, 44100):
        clips = {}
        for folder in speakers:
            files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".ogg", ".wav", ".flac"))
            parts, length, gap = [], 0, np.zeros(int(gap_seconds * rate))
            for index in rng.permutation(len(files)):
                clip = read_clip(files[index], rate)
                parts += [clip, gap]
                length += clip.size + gap.size
                if length >= FULLBAND_DEV_CLIP_SECONDS * rate:
                    break
            voice = np.concatenate(parts[:-1])  # the last gap dropped: the clip ends with speech
            active = voice[np.abs(voice) > 1e-4]
            clips[folder.name] = voice / np.sqrt(np.mean(active ** 2))
        out[rate] = [pair_case(pair, clips, rate, rng) for pair in chosen]
    return out


UNSEEN_DEV_SEED = 9100
UNSEEN_MIN_SECONDS = 14.0  # voices with less solo speech would repeat their few utterances within a conversation


def unseen_dev_cases(count: int, folder: Path) -> list[Case]:
    """Generated 40 s conversations (16 kHz) of voices the embedded separator never trained on and that
    no evaluation uses: the development set of ``scripts/train_separator.py``'s ``unseen_corpus``
    (meeting-sim's dry test-clean speakers and AMI speakers' solo stretches), the voices with at
    least UNSEEN_MIN_SECONDS of speech, written to ``folder`` as a speech folder."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_separator import unseen_corpus

    by_speaker: dict[str, list[np.ndarray]] = {}
    for speaker, audio in unseen_corpus(16000):
        by_speaker.setdefault(speaker.replace("-", ""), []).append(np.asarray(audio, np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    for speaker, clips in sorted(by_speaker.items()):
        if sum(c.size for c in clips) / 16000 >= UNSEEN_MIN_SECONDS:
            for index, clip in enumerate(clips):
                sf.write(str(folder / f"{speaker}-{index:03d}.wav"), clip, 16000)
    cases = []
    for index in range(count):
        seed = UNSEEN_DEV_SEED + index
        conversation = generate_conversation(folder, ConversationSpec(duration=40.0, sample_rate=16000,
                                                                      overlap_ratio=0.2), seed)
        cases.append(Case(f"unseen-{seed}", 16000, conversation.mixture, conversation.references,
                          conversation.diarization, None, {"overlap_ratio": conversation.overlap_ratio()}))
    return cases


SHORT_DEV_SEED = 77
SHORT_DEV_CLIP_SECONDS = 4.0  # each voice's clip, like the full-band pairs' (about 2 s of it alone)


def short_dev_cases(kind: str, count: int = 30) -> list[Case]:
    """Pairs like the evaluation's (:func:`pair_case`: "A alone, both, B alone", about 2 s alone per
    voice, so the tilt rule predicts above the band) at 16 kHz under the 8 kHz model, from voices no
    evaluation uses: ``vctk``, the VCTK training voices of ``vctk16k/`` (each voice's two sentences,
    the six speakers of ``fullband/`` left out), or ``unseen``, the voices of ``--dev-unseen``
    (meeting-sim's test-clean sources and AMI solo speech), each cut to SHORT_DEV_CLIP_SECONDS.
    Session 28 chose the embedded model's tilt-rule softening on these and the klettres pairs."""
    rate = 16000
    rng = np.random.default_rng(SHORT_DEV_SEED)
    pieces: dict[str, list[np.ndarray]] = {}
    if kind == "vctk":
        evaluation_speakers = {path.stem.split("_")[1] for path in (shared_root() / "data" / "fullband").iterdir()
                               if path.stem.startswith("vctk_")}
        for path in sorted((shared_root() / "data" / "vctk16k").glob("*.wav")):
            speaker = path.stem.split("_")[0]
            if speaker in evaluation_speakers:
                continue
            audio, file_rate = sf.read(str(path), dtype="float32")
            audio = resample(audio, file_rate, rate)
            loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
            pieces.setdefault(speaker, []).append(audio[loud[0]:loud[-1] + 1])
    else:
        sys.path.insert(0, str(ROOT / "scripts"))
        from train_separator import unseen_corpus

        for speaker, audio in unseen_corpus(rate):
            pieces.setdefault(speaker, []).append(np.asarray(audio, np.float32))
    gap = np.zeros(int(0.15 * rate), np.float32)
    clips = {}
    for speaker, items in pieces.items():
        parts, length = [], 0
        for audio in items:
            parts += [audio, gap]
            length += audio.size
            if length >= SHORT_DEV_CLIP_SECONDS * rate:
                break
        voice = np.concatenate(parts[:-1])[: int(SHORT_DEV_CLIP_SECONDS * rate)]
        if kind == "unseen" and voice.size < 2.0 * rate:  # a few AMI voices have only scraps alone; every
            continue  # VCTK voice is kept, some under 2 s, as session 28's figures were measured
        clips[speaker] = voice / np.sqrt(np.mean(voice[np.abs(voice) > 1e-4] ** 2))
    pairs = list(itertools.combinations(sorted(clips), 2))
    chosen = [pairs[i] for i in rng.choice(len(pairs), min(count, len(pairs)), replace=False)]
    return [pair_case(pair, clips, rate, rng) for pair in chosen]


def libri_cases(count: int, *, reverb: bool = False, dev: bool = False) -> list[Case]:
    """Generated 60 s conversations of test-other voices (evaluation), or of train-clean-100 voices
    (``dev``: the development set on which podsep's rules may be chosen)."""
    speech = shared_root() / "data" / "librispeech" / ("train-clean-100" if dev else "test-other")
    rooms = shared_root() / "data" / "meeting-sim"
    cases = []
    for index in range(count):
        seed = (DEV_SEED if dev else ROOM_SEED if reverb else LIBRI_SEED) + index
        spec = ConversationSpec(duration=60.0, sample_rate=16000, overlap_ratio=0.2, reverb=reverb,
                                rir_glob="*rir*__0.wav")
        conversation = generate_conversation(speech, spec, seed, rir_dir=rooms if reverb else None)
        dry = None
        if reverb:  # same seed without the room: the same turns and gains, dry
            plain = generate_conversation(speech, ConversationSpec(duration=60.0, sample_rate=16000,
                                                                   overlap_ratio=0.2), seed)
            assert plain.diarization.turns == conversation.diarization.turns
            dry = plain.references
        cases.append(Case(f"{'room' if reverb else 'dev' if dev else 'libri'}-{seed}", 16000, conversation.mixture,
                          conversation.references, conversation.diarization, dry,
                          {"overlap_ratio": conversation.overlap_ratio(),
                           "rirs": [s["rir"] for s in conversation.metadata["speakers"]]}))
    return cases


# ------------------------------------------------------------------------------------------------
# separators


class Oracle:
    """The true voices as a ``model_rate`` model would output them: band-limited, shuffled, mis-scaled."""

    def __init__(self, case: Case, model_rate: int, voices: dict[str, np.ndarray] | None = None) -> None:
        self.sample_rate = model_rate
        self.lookup = case.mono
        voices = case.references if voices is None else voices
        self.parts = []
        for voice in reversed(list(voices.values())):
            if model_rate < case.rate:
                voice = resample(resample(voice, case.rate, model_rate), model_rate, case.rate)
            self.parts.append(np.asarray(voice, np.float32))

    def describe(self) -> dict:
        return {"kind": "oracle", "sample_rate": self.sample_rate}

    def __call__(self, window: np.ndarray, rate: int) -> np.ndarray:
        start = locate_window(self.lookup, np.asarray(window, np.float32))
        return np.stack([p[start:start + window.size] * g for p, g in zip(self.parts, (3.0, 0.3))])


def only_rendering_band(index: int) -> None:
    """Render overlaps from one of the bands podsep averages (0: the separator's band with its top-octave
    network; 1: the extension from its own band), where it would average two; for comparing them."""
    import podsep.separate

    both = podsep.separate.rendering_bands

    def one(separator: Any, rate: int) -> list[float | None]:
        bands = both(separator, rate)
        return [bands[index]] if len(bands) == 2 else bands

    podsep.separate.rendering_bands = one


def embedded(weights: str | None, high_band: str | None = None) -> Any:
    """The embedded separator as podsep builds it; ``high_band`` as ``separation.high_band`` reads it
    (``auto``, ``on``, ``off`` or a file)."""
    from podsep.models.embedded.separator import EmbeddedSeparator, high_band_setting

    choice = high_band_setting(high_band) if high_band is not None else None
    return EmbeddedSeparator(weights, high_band=choice).load()


# ------------------------------------------------------------------------------------------------
# metrics


def band_metrics(reference: np.ndarray, estimate: np.ndarray, rate: int, band_hz: float,
                 mask: np.ndarray, *, eight_k: bool) -> dict[str, float]:
    ref, est = Bands(reference, rate), Bands(estimate, rate)
    out: dict[str, float] = {"si_sdr_full": si_sdr(reference[mask], estimate[mask])}
    low_ref, low_est = ref.part(None, LOW_FRACTION * band_hz)[mask], est.part(None, LOW_FRACTION * band_hz)[mask]
    out["si_sdr_low"] = si_sdr(low_ref, low_est)
    edges = {"band": band_hz}
    if eight_k:
        edges["8k"] = 8000.0
    for key, edge in edges.items():
        high_ref, high_est = ref.part(edge, None)[mask], est.part(edge, None)[mask]
        energy_ref, energy_est = float(np.sum(high_ref ** 2)), float(np.sum(high_est ** 2))
        out[f"energy_{key}_db"] = 10 * math.log10(max(energy_est, 1e-30) / max(energy_ref, 1e-30))
        out[f"si_sdr_{key}"] = si_sdr(high_ref, high_est)
    return out


def silent_leak(reference: np.ndarray, track: np.ndarray, mask: np.ndarray, rate: int) -> dict[str, float]:
    """How much a voice's track holds where its voice is silent inside a labelled overlap.

    The 50 ms frames of ``mask`` where the reference is ONE_VOICE_DB or more under its own mean
    level (a pause, a breath, a lead-in: the other voice talks alone there) should stay as quiet in
    the track. ``silent_leak_db`` is the track's energy there against the reference's (0 dB: as
    quiet as the voice; duplicate puts the other voice there). A separator that splits a lone voice
    between its outputs shows here. Empty dict where the overlaps hold no such frame.
    """
    frame = rate // 20
    count = reference.size // frame
    inside = np.asarray(mask[:count * frame]).reshape(count, frame).all(axis=1)
    chosen = inside & silent_frames(reference, 0, count, frame)
    if not chosen.any():
        return {}
    ref_energy = float(frame_energies(reference, 0, count, frame)[chosen].sum())
    est_energy = float(frame_energies(track, 0, count, frame)[chosen].sum())
    return {"silent_leak_db": 10 * math.log10(max(est_energy, 1e-30) / max(ref_energy, 1e-30)),
            "silent_frames": int(chosen.sum())}


def log_spectral_distance(a: np.ndarray, b: np.ndarray, window: np.ndarray, floor: float, keep: np.ndarray) -> float:
    pa = np.maximum(np.abs(np.fft.rfft(a * window)) ** 2, floor)[keep]
    pb = np.maximum(np.abs(np.fft.rfft(b * window)) ** 2, floor)[keep]
    return float(np.sqrt(np.mean((10 * np.log10(pa / pb)) ** 2)))


def seams(case: Case, result: Any, band_hz: float | None) -> list[dict[str, float]]:
    """Every switch between the original and a separated window in a track (see the module docstring)."""
    rate, n = case.rate, case.num_samples
    fade = int(round(result.manifest["parameters"]["assembly"]["crossfade"] * rate))
    length = int(round(FRAME_SECONDS * rate))
    window = np.hanning(length + 2)[1:-1]
    freqs = np.fft.rfftfreq(length, 1.0 / rate)
    full_bins = freqs >= 50.0
    high_bins = freqs >= band_hz if band_hz is not None else None
    speakers = case.diarization.speakers
    activity = case.diarization.activity(rate, n)
    count = activity.sum(axis=0)
    cores: dict[str, list[tuple[int, int]]] = {s: [] for s in speakers}
    edges: set[int] = set()
    for region in result.manifest["overlaps"]:
        for entry in region["windows"]:
            a, b = int(round(entry["core_start"] * rate)), int(round(entry["core_end"] * rate))
            edges.update((a, b))
            for speaker in entry["assignment"]:
                cores[speaker].append((a, b))

    def separated(speaker: str, x: int) -> bool:
        return count[x] >= 2 and any(a <= x < b for a, b in cores[speaker])

    rows = []
    mono = case.mono.astype(np.float64)
    for t in sorted(edges):
        for row, speaker in enumerate(speakers):
            lo, hi = t - fade - length, t + fade + length
            if lo < 0 or hi > n or not activity[row, lo:hi].all():
                continue
            before, after = separated(speaker, t - 1), separated(speaker, t)
            if before == after and not before:
                continue
            if before != after:  # the crossfade lies on the original's side
                zone = (t - fade, t) if not before else (t, t + fade)
                kind = "original/separated"
            else:
                zone = (t - fade // 2, t + fade // 2)
                kind = "separated/separated"
            first = slice(zone[0] - length, zone[0])
            second = slice(zone[1], zone[1] + length)
            track = np.asarray(result.tracks[speaker], np.float64).mean(axis=0)
            reference = case.references[speaker].astype(np.float64)
            peak = max(np.max(np.abs(np.fft.rfft(mono[s] * window)) ** 2) for s in (first, second))
            floor = peak * 10 ** (LSD_FLOOR_DB / 10)
            entry = {"time": t / rate, "speaker": speaker, "kind": kind}
            for name, signal in (("track", track), ("input", mono), ("reference", reference)):
                entry[f"lsd_{name}"] = log_spectral_distance(signal[first], signal[second], window, floor, full_bins)
                if high_bins is not None and high_bins.any():
                    entry[f"lsd_high_{name}"] = log_spectral_distance(signal[first], signal[second], window,
                                                                      floor, high_bins)
            rows.append(entry)
    return rows


# ------------------------------------------------------------------------------------------------
# runs


def score_rooms(count: int, separator: Any, seam_groups: list[tuple[str, list[dict]]],
                oracles: bool = True) -> dict[str, Any]:
    """The reverberant conversations' table (printed) and report entry; their seams join ``seam_groups``."""
    room = libri_cases(count, reverb=True)
    makers: list[tuple[str, Any]] = [("embedded 8 kHz", lambda c: separator)]
    if oracles:
        makers += [("oracle 8 kHz, reverberant images", lambda c: Oracle(c, 8000)),
                   ("oracle 16 kHz (full band), dry voices", lambda c: Oracle(c, 16000, c.dry))]
    room_sets = []
    room_seams: list[dict] = []
    for label, make in makers:
        rows = room_scores(room, make, room_seams if label.startswith("embedded") else None)
        room_sets.append((label, rows))
    summary = print_room_table(room_sets)
    seam_groups.append(("16 kHz rooms, embedded 8 kHz", room_seams))
    return {"conversations": [{"name": c.name, **c.info} for c in room], "summary": summary,
            "voices": {label: rows for label, rows in room_sets}}


#: ``--adapt``: run the embedded separator as podsep does by default, adapted to each conversation's
#: voices where its solo speech allows, instead of as given.
ADAPT = False
#: ``--adapt`` only: whether the top-octave network is adapted too (podsep's default; ``--no-top-octave-adapt``
#: adapts the separator alone, as podsep did before session 33).
TOP_OCTAVE_ADAPT = True


def adapt_once_per_conversation(cache: Path | None = None) -> None:
    """Adapt the separator (and its top octave) once per conversation, not once per rendering: every
    rendering of a conversation then shares the same adapted model (as a user's one run would have),
    and the table costs one adaptation per conversation.

    ``cache``: a folder where each adapted model is also kept on disk, keyed by the given
    weights' sha256 (and its top-octave network's, when it has one) and the recording's
    fingerprint, so that a later run (another rendering rule, the same weights and
    conversations) skips the adaptations, about 80 of the run's 83 minutes.
    The adapted model depends only on those two (its seed comes from the fingerprint and its
    step count from the budget, not from the clock), so a cached one is the one a fresh run makes."""
    import pickle

    import podsep.pipeline

    learn = podsep.pipeline.learn_episode_voices
    adapted: dict[tuple[int, str], tuple[Any, Any, dict[str, Any]]] = {}

    def learn_cached(separator: Any, *args: Any) -> tuple[Any, dict[str, Any]]:
        weights = getattr(separator, "sha256", None)  # oracles and test doubles have none: nothing to adapt
        if cache is None or not weights:
            return learn(separator, *args)
        top_octave = getattr(separator, "high_band_sha256", None)  # the adapted copy keeps the base's network
        network = f"-{top_octave[:8]}" if top_octave else ""
        path = cache / f"{str(weights)[:16]}{network}-{args[-1][:24]}.pkl"
        if path.exists():
            with path.open("rb") as handle:
                return pickle.load(handle)
        model, entry = learn(separator, *args)
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as handle:
            pickle.dump((model, entry), handle)
        partial.replace(path)
        return model, entry

    def learn_once(separator: Any, *args: Any) -> tuple[Any, dict[str, Any]]:
        key = (id(separator), args[-1])  # the separator given, the recording's fingerprint
        if key not in adapted:  # the given separator is kept too, so that its id is never reused
            adapted[key] = (separator, *learn_cached(separator, *args))
        _, model, entry = adapted[key]
        return model, dict(entry)

    learn_octave = podsep.pipeline.learn_episode_top_octave
    octaves: dict[tuple[int, str], tuple[Any, Any, dict[str, Any] | None]] = {}

    def learn_octave_once(separator: Any, *args: Any) -> tuple[Any, dict[str, Any] | None]:
        # The top octave too is learnt once per conversation (and not kept on disk: it costs about
        # 50 s, where the separator's adaptation costs minutes). Its result depends on the separator
        # it is given (the conversation's adapted one, the same object for every rendering from the
        # table above) and the recording's fingerprint.
        key = (id(separator), args[-2])
        if key not in octaves:
            octaves[key] = (separator, *learn_octave(separator, *args))
        _, model, entry = octaves[key]
        return model, (dict(entry) if entry is not None else None)

    podsep.pipeline.learn_episode_voices = learn_once
    podsep.pipeline.learn_episode_top_octave = learn_octave_once


def _move_fraction() -> float | None:
    """podsep.adapt_top_octave.MOVE_FRACTION as this run uses it (None where podsep lacks it)."""
    try:
        import podsep.adapt_top_octave as stage
    except ImportError:
        return None
    return getattr(stage, "MOVE_FRACTION", None)


def fixed_model() -> dict[str, Any]:
    """Overrides that keep the separator as given (no per-episode adaptation, where podsep has it),
    unless ``--adapt`` asks for podsep's default."""
    from podsep.config import load_settings

    if ADAPT:
        return {} if TOP_OCTAVE_ADAPT else {"separation.adapt_top_octave": False}
    return {"separation.adapt": "off"} if hasattr(load_settings().separation, "adapt") else {}


def split(case: Case, separator: Any, rendering: str, **extra: Any) -> Any:
    import podsep.reconstruct

    overrides = {**fixed_model(), **RENDERINGS.get(rendering, {})}
    overrides.update(extra.pop("overrides", {}))
    overrides.setdefault("output.extras", False)
    undone = {name: value for name, value in ABLATIONS.get(rendering, {}).items()
              if hasattr(podsep.reconstruct, name)}  # an older podsep may lack a part: then it is plain rebuild
    kept = {name: getattr(podsep.reconstruct, name) for name in undone}
    for name, value in undone.items():
        setattr(podsep.reconstruct, name, value)
    try:
        return podsep.split(case.mixture, sample_rate=case.rate, diarization=case.diarization, separator=separator,
                            overrides=overrides, **extra)
    finally:
        for name, value in kept.items():
            setattr(podsep.reconstruct, name, value)


def score_cases(cases: list[Case], make_separator: Any, band_hz: float, *, eight_k: bool,
                seam_rows: list[dict] | None = None) -> dict[str, list[dict[str, float]]]:
    """Per rendering, one row of band metrics per voice of every case."""
    rows: dict[str, list[dict[str, float]]] = {r: [] for r in BAND_RENDERINGS}
    for case in cases:
        separator = make_separator(case)
        mask = overlap_regions_mask(case.diarization, case.rate, case.num_samples)
        first_seam = len(seam_rows) if seam_rows is not None else 0
        for rendering in BAND_RENDERINGS:
            result = split(case, separator, rendering)
            certainty = [w["rendering"]["certainty"] for region in result.manifest["overlaps"]
                         for w in region["windows"] if "certainty" in w.get("rendering", {})]
            rules = sorted({w["rendering"]["above_band"] for region in result.manifest["overlaps"]
                            for w in region["windows"] if "above_band" in w.get("rendering", {})})
            for speaker, reference in case.references.items():
                track = np.asarray(result.tracks[speaker], np.float64).mean(axis=0)
                row = band_metrics(reference, track, case.rate, band_hz, mask, eight_k=eight_k)
                row.update(silent_leak(reference, track, mask, case.rate))
                row.update(case=case.name, speaker=speaker,
                           adapted=bool(result.manifest.get("adaptation", {}).get("used")),
                           top_octave_adapted=bool((result.manifest.get("adaptation", {}).get("top_octave") or {})
                                                   .get("used")))
                if certainty:
                    row["case_certainty"] = float(np.mean(certainty))
                if rules:
                    row["above_band_rules"] = rules  # which rule predicted above the band in the case's windows
                rows[rendering].append(row)
            if seam_rows is not None and rendering in ("paste", "rebuild"):
                for seam in seams(case, result, band_hz):
                    seam.update(case=case.name, rendering=rendering)
                    seam_rows.append(seam)
        if seam_rows is not None:  # each seam's voice, as buried as its overlaps hold it (see BURIED_DB)
            level = {row["speaker"]: row["si_sdr_low"] for row in rows["duplicate"] if row["case"] == case.name}
            for seam in seam_rows[first_seam:]:
                seam["voice_to_rest_db"] = level.get(seam["speaker"])
    return rows


def score_full_band(cases_by_rate: dict[int, list[Case]], separator: Any, kind: str,
                    seam_groups: list[tuple[str, list[dict]]] | None = None) -> list[tuple[str, dict, bool, float]]:
    """The full-band table's sets: at every rate, ideal 16 kHz estimates and the embedded 8 kHz model
    (the evaluation's pairs and the development pairs alike); each set's seams go to ``seam_groups``
    when given."""
    band_sets = []
    for rate, cases in cases_by_rate.items():
        for label, make, band in (("oracle 16 kHz", lambda c: Oracle(c, 16000), 8000.0),
                                  ("embedded 8 kHz", lambda c: separator, 4000.0)):
            seam_rows: list[dict] | None = [] if seam_groups is not None else None
            rows = score_cases(cases, make, band, eight_k=True, seam_rows=seam_rows)
            band_sets.append((f"{rate / 1000:g} kHz, {len(cases)} {kind}, {label}", rows, True, band))
            if seam_groups is not None:
                seam_groups.append((f"{rate / 1000:g} kHz, {label}", seam_rows))
    return band_sets


def room_scores(cases: list[Case], make_separator: Any, seam_rows: list[dict] | None) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {r: [] for r in RENDERINGS}
    for case in cases:
        separator = make_separator(case)
        mask = overlap_regions_mask(case.diarization, case.rate, case.num_samples)
        for rendering in RENDERINGS:
            result = split(case, separator, rendering)
            for speaker, reference in case.references.items():
                track = np.asarray(result.tracks[speaker], np.float64).mean(axis=0)
                rows[rendering].append({"case": case.name, "speaker": speaker,
                                        "si_sdr_overlap": si_sdr(reference[mask], track[mask])})
            if seam_rows is not None and rendering in ("paste", "rebuild"):
                band = getattr(separator, "sample_rate", case.rate) / 2
                for seam in seams(case, result, band if band < case.rate / 2 else None):
                    seam.update(case=case.name, rendering=rendering)
                    seam_rows.append(seam)
    return rows


def identity(cases: list[tuple[str, Case, Any]]) -> list[dict[str, Any]]:
    """Tracks + background read back from the files, against the input, per format and configuration."""
    rows = []
    configs = {"rebuild": {}, "paste": RENDERINGS["paste"], "mute": {"overlaps.policy": "mute"}}
    for label, case, separator in cases:
        mixture = np.atleast_2d(case.mixture).astype(np.float64)
        for config, overrides in configs.items():
            for depth in ("float", "24", "16"):
                with tempfile.TemporaryDirectory() as folder:
                    result = podsep.split(case.mixture, sample_rate=case.rate, diarization=case.diarization,
                                          separator=separator, output_dir=folder,
                                          overrides={**fixed_model(), **overrides, "output.bit_depth": depth,
                                                     "output.extras": False})
                    total = np.zeros_like(mixture)
                    for role, path in result.files.items():
                        if role.startswith("track:") or role == "background":
                            audio, _ = sf.read(str(path), dtype="float64", always_2d=True)
                            total += audio.T
                    written = "background" in result.files
                lsb = 2.0 ** -(15 if depth == "16" else 23) if depth != "float" else None
                rounded = mixture if lsb is None else np.round(mixture / lsb) * lsb
                rows.append({
                    "input": label, "rendering": config, "format": depth, "background": written,
                    "max_error_vs_input": float(np.max(np.abs(total - mixture))),
                    "max_error_vs_input_in_format": float(np.max(np.abs(total - rounded))),
                    "lsb": lsb, "manifest_identity_max_error": result.manifest["background"].get("identity_max_error"),
                })
    return rows


# ------------------------------------------------------------------------------------------------
# tables


def stat(values: list[float]) -> tuple[float, float, float]:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return (math.nan, math.nan, math.nan)
    return float(np.mean(finite)), float(np.min(finite)), float(np.max(finite))


def fmt(value: float, width: int = 7) -> str:
    return f"{value:{width}.1f}" if np.isfinite(value) else f"{'-':>{width}}"


def summarise_band(rows: dict[str, list[dict]], eight_k: bool) -> dict[str, dict[str, list[float]]]:
    keys = ["energy_band_db", "si_sdr_band", "si_sdr_low", "si_sdr_full"]
    if eight_k:
        keys[1:1] = ["energy_8k_db"]
        keys.insert(3, "si_sdr_8k")
    return {r: {k: list(stat([row[k] for row in rows[r]])) for k in keys} for r in rows}


def band_report(title: str, sets: list[tuple[str, dict, bool, float]]) -> dict[str, Any]:
    """Print the band table and return it as the ``--json`` report holds it: per set its band,
    summary and every voice, and the targets' verdicts (every run, evaluation or development)."""
    verdicts = print_band_table(title, sets)
    return {"sets": {name: {"band_hz": band, "summary": summarise_band(rows, eight_k), "voices": rows}
                     for name, rows, eight_k, band in sets},
            "targets": verdicts}


def finish(report: dict[str, Any], started: float, json_path: Path | None) -> None:
    """End a run (the evaluation or a development set): print its time and write ``--json``."""
    report["seconds"] = time.perf_counter() - started
    print(f"\n{report['seconds']:.0f} s")
    if json_path:
        json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")


def print_band_table(title: str, sets: list[tuple[str, dict, bool, float]]) -> list[dict]:
    """One table: rows are (set, rendering); columns mean [min, max] over voices."""
    print(f"\n{title}")
    head = (f"{'set / separator':<34} {'rendering':<10} {'E>band dB':>20} {'E>8k dB':>20} {'SI-SDR>band':>12} "
            f"{'SI-SDR>8k':>10} {'SI-SDR low':>11} {'SI-SDR full':>11}")
    print(head)
    print("-" * len(head))
    verdicts = []
    for label, rows, eight_k, band in sets:
        for rendering in rows:
            r = rows[rendering]
            e = stat([x["energy_band_db"] for x in r])
            e8 = stat([x["energy_8k_db"] for x in r]) if eight_k else (math.nan,) * 3
            cells = [f"{fmt(e[0], 6)} [{fmt(e[1], 5)},{fmt(e[2], 5)}]",
                     f"{fmt(e8[0], 6)} [{fmt(e8[1], 5)},{fmt(e8[2], 5)}]" if eight_k else f"{'-':>20}",
                     fmt(stat([x["si_sdr_band"] for x in r])[0], 12),
                     fmt(stat([x["si_sdr_8k"] for x in r])[0], 10) if eight_k else f"{'-':>10}",
                     fmt(stat([x["si_sdr_low"] for x in r])[0], 11),
                     fmt(stat([x["si_sdr_full"] for x in r])[0], 11)]
            print(f"{label if rendering == next(iter(rows)) else '':<34} {rendering:<10} " + " ".join(cells))
        verdicts.append(verdict(label, rows, eight_k))
    print("\ntargets (rebuild; per voice, and on the means):")
    for v in verdicts:
        print(f"  {v['set']}: energy within +-3 dB above the band {v['energy_band_ok']}/{v['voices']} voices"
              + (f", above 8 kHz {v['energy_8k_ok']}/{v['voices']}" if v.get("energy_8k_ok") is not None else "")
              + f" [{'met' if v['energy_met'] else 'NOT met'}] (voices not buried, at most "
              f"{-BURIED_DB:.0f} dB below the rest in the band: {v['energy_ok_not_buried']}/{v['voices_not_buried']} "
              f"within +-3 dB)"
              + f"; SI-SDR>band {v['si_band']:.1f} vs duplicate+3 "
              f"{v['dup_plus_3']:.1f} [{'met' if v['vs_duplicate_met'] else 'NOT met'}, {v['vs_duplicate_voices']}/"
              f"{v['voices']} voices] and vs low-3 {v['low_minus_3']:.1f} "
              f"[{'met' if v['vs_low_met'] else 'NOT met'}, {v['vs_low_voices']}/{v['voices']} voices]; "
              f"mean window certainty {v['certainty']:.2f}"
              + (f"; above 8 kHz SI-SDR {v['si_8k']:.1f} vs duplicate+3 {v['dup_8k_plus_3']:.1f} "
                 f"[{'met' if v['vs_duplicate_8k_met'] else 'NOT met'}]" if v.get("si_8k") is not None else "")
              + (f"; where a voice is silent inside an overlap its track holds {v['silent_leak_db']:+.1f} dB of "
                 f"its reference's energy on average (duplicate {v['silent_leak_duplicate_db']:+.1f}), more than "
                 f"{LEAK_DB:+.0f} dB for {v['silent_leaking_voices']}/{v['silent_voices']} voices"
                 if v.get("silent_leak_db") is not None and v.get("silent_leak_duplicate_db") is not None else "")
              + (f"; voices by rule above the band {v['rules']}" if v["rules"] else "")
              + (f"; adapted for {v['adapted_voices']}/{v['voices']} voices" if ADAPT else ""))
    return verdicts


#: A voice this far (dB) or more below the rest of its overlaps, inside the separator's band, is
#: "buried": duplicate's SI-SDR there (the mixture scored as the voice) is its voice-to-rest ratio.
#: The energy target is also counted without buried voices, because there even oracle sources can
#: miss it (the octaves above the band are extended from what the band holds, and a buried voice's
#: band holds little of it): the split says how much of a miss is the separator's and how much the
#: set's. (Before session 35 most buried voices were not speaking at all: see ``CLIP_TRIM``.)
BURIED_DB = -10.0


def reprint(path: Path) -> None:
    """The full-band table and targets of an earlier ``--json`` report, and its seams where it has them,
    counted as this script now counts."""
    try:
        report = json.loads(path.read_text())
        sets = report["fullband"]["sets"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"{path}: not a score_fullband --json report with a full-band table ({error})")
    print(f"from {path}: {report.get('command', '')}")
    print_band_table("Full band, inside overlaps", [
        (name, entry["voices"], "energy_8k_db" in entry["voices"]["rebuild"][0], entry["band_hz"])
        for name, entry in sets.items()])
    seam_rows = report.get("seams", {}).get("seams")
    if seam_rows:
        print_seam_table(list(seam_rows.items()))


def verdict(label: str, rows: dict[str, list[dict]], eight_k: bool) -> dict[str, Any]:
    rebuilt, duplicate = rows["rebuild"], rows["duplicate"]
    voices = len(rebuilt)
    audible = [x for x, d in zip(rebuilt, duplicate) if d["si_sdr_low"] >= BURIED_DB]
    audible_ok = sum(abs(x["energy_band_db"]) <= 3 and (not eight_k or abs(x["energy_8k_db"]) <= 3)
                     for x in audible)
    energy_band = sum(abs(x["energy_band_db"]) <= 3 for x in rebuilt)
    energy_8k = sum(abs(x["energy_8k_db"]) <= 3 for x in rebuilt) if eight_k else None
    vs_dup = sum(x["si_sdr_band"] >= d["si_sdr_band"] + 3 for x, d in zip(rebuilt, duplicate))
    vs_low = sum(x["si_sdr_band"] >= x["si_sdr_low"] - 3 for x in rebuilt)
    si_band = stat([x["si_sdr_band"] for x in rebuilt])[0]
    dup = stat([x["si_sdr_band"] for x in duplicate])[0]
    low = stat([x["si_sdr_low"] for x in rebuilt])[0]
    certainty = stat([x["case_certainty"] for x in rebuilt if "case_certainty" in x])[0]
    si_8k = stat([x["si_sdr_8k"] for x in rebuilt])[0] if eight_k else None
    dup_8k = stat([x["si_sdr_8k"] for x in duplicate])[0] if eight_k else None
    rules: dict[str, int] = {}
    for row in rebuilt:
        for rule in row.get("above_band_rules", []):
            rules[rule] = rules.get(rule, 0) + 1
    return {"set": label, "voices": voices, "certainty": certainty, "energy_band_ok": energy_band, "energy_8k_ok": energy_8k,
            "energy_met": energy_band == voices and (energy_8k is None or energy_8k == voices),
            "si_band": si_band, "dup_plus_3": dup + 3, "low_minus_3": low - 3,
            "vs_duplicate_met": si_band >= dup + 3, "vs_duplicate_voices": vs_dup,
            "vs_low_met": si_band >= low - 3, "vs_low_voices": vs_low,
            "si_8k": si_8k, "dup_8k_plus_3": None if dup_8k is None else dup_8k + 3,
            "vs_duplicate_8k_met": None if si_8k is None else si_8k >= dup_8k + 3, "rules": rules,
            "adapted_voices": sum(bool(x.get("adapted")) for x in rebuilt),
            "voices_not_buried": len(audible), "energy_ok_not_buried": audible_ok,
            "silent_leak_db": _mean_leak(rebuilt), "silent_leak_duplicate_db": _mean_leak(duplicate),
            "silent_leaking_voices": sum(row.get("silent_leak_db", -math.inf) > LEAK_DB for row in rebuilt),
            "silent_voices": sum("silent_leak_db" in row for row in rebuilt)}


#: A track "leaks" where, with its voice silent inside an overlap, it holds this much (dB) more energy
#: than the voice's own silence there (breath, room): the other voice, heard through it.
LEAK_DB = 6.0


def _mean_leak(rows: list[dict]) -> float | None:
    """Mean of the voices' ``silent_leak_db`` (None where no voice had a silent overlap frame)."""
    values = [row["silent_leak_db"] for row in rows if "silent_leak_db" in row]
    return float(np.mean(values)) if values else None


def print_room_table(sets: list[tuple[str, dict]]) -> list[dict]:
    print("\nRoom: overlap SI-SDR (dB) against each speaker's reverberant image, mean [min, max] over voices")
    head = (f"{'separator':<40} {'duplicate':>18} {'paste':>18} {'rebuild':>18} "
            f"{'rebuild-paste':>20} {'wins':>6}")
    print(head)
    print("-" * len(head))
    out = []
    for label, rows in sets:
        cells = []
        for rendering in ("duplicate", "paste", "rebuild"):
            m, lo, hi = stat([x["si_sdr_overlap"] for x in rows[rendering]])
            cells.append(f"{fmt(m, 6)} [{fmt(lo, 4)},{fmt(hi, 4)}]")
        gaps = [r["si_sdr_overlap"] - p["si_sdr_overlap"] for r, p in zip(rows["rebuild"], rows["paste"])]
        g = stat(gaps)
        wins = sum(v > 0 for v in gaps)
        print(f"{label:<40} " + " ".join(f"{c:>18}" for c in cells)
              + f" {fmt(g[0], 6)} [{fmt(g[1], 5)},{fmt(g[2], 5)}] {wins:>3}/{len(gaps)}")
        out.append({"separator": label, "gap_mean": g[0], "gap_min": g[1], "wins": wins, "voices": len(gaps)})
    return out


def print_identity_table(rows: list[dict]) -> dict[str, Any]:
    print("\nIdentity: max |tracks + background - input|, read back from the written files "
          "(rebuild, paste and mute; 3 inputs)")
    head = (f"{'format':<7} {'vs float input':>15} {'in steps':>9} {'vs input in format':>19} {'in steps':>9} "
            f"{'manifest max':>13} {'runs':>5}  target: <= 1/2 step (float: 1e-6) | <= 1 step")
    print(head)
    print("-" * len(head))
    summary = {}
    for depth in ("float", "24", "16"):
        chosen = [r for r in rows if r["format"] == depth and r["background"]]
        error = max(r["max_error_vs_input"] for r in chosen)
        in_format = max(r["max_error_vs_input_in_format"] for r in chosen)
        manifest = max(r["manifest_identity_max_error"] or 0.0 for r in chosen)
        lsb = chosen[0]["lsb"]
        half = 1e-6 if lsb is None else lsb / 2
        step = 1e-6 if lsb is None else lsb
        summary[depth] = {"max_error": error, "max_error_in_format": in_format, "manifest_max": manifest,
                          "runs": len(chosen), "step": lsb, "half_step_met": error <= half,
                          "one_step_met": error <= step and in_format <= step}
        steps = (lambda v: f"{v / lsb:>9.4f}") if lsb else (lambda v: f"{'-':>9}")
        print(f"{depth:<7} {error:>15.3g} {steps(error)} {in_format:>19.3g} {steps(in_format)} {manifest:>13.3g} "
              f"{len(chosen):>5}  {'met' if summary[depth]['half_step_met'] else 'NOT met'} | "
              f"{'met' if summary[depth]['one_step_met'] else 'NOT met'}")
    return summary


def print_seam_table(groups: list[tuple[str, list[dict]]]) -> list[dict]:
    print("\nSeams: log-spectral distance (dB) between the 20 ms frames before and after each original/separated "
          "switch (crossfade included)")
    head = (f"{'set / separator':<30} {'rendering':<9} {'seams':>5} {'LSD track':>9} {'input':>6} {'ref':>6} "
            f"{'track/input mean':>16} {'max':>6} {'>input':>7} {'ref/input':>9} {'track-ref':>9} "
            f"{'>band: track/input':>19} {'not buried (n)':>17}")
    print(head)
    print("-" * len(head))
    out = []
    for label, rows in groups:
        for rendering in ("paste", "rebuild"):
            chosen = [r for r in rows if r["rendering"] == rendering and r["kind"] == "original/separated"]
            if not chosen:
                continue
            track = np.array([r["lsd_track"] for r in chosen])
            source = np.array([r["lsd_input"] for r in chosen])
            reference = np.array([r["lsd_reference"] for r in chosen])
            ratio = track / np.maximum(source, 1e-9)
            # the yardstick: what a track equal to its reference would score at the same seams
            reference_ratio = reference / np.maximum(source, 1e-9)
            larger = int(np.sum(track > source))
            high = [r["lsd_high_track"] / max(r["lsd_high_input"], 1e-9) for r in chosen if "lsd_high_track" in r]
            audible = [value for value, r in zip(ratio, chosen)
                       if r.get("voice_to_rest_db") is not None and r["voice_to_rest_db"] >= BURIED_DB]
            item = {"set": label, "rendering": rendering, "seams": len(chosen), "lsd_track": float(track.mean()),
                    "lsd_input": float(source.mean()), "lsd_reference": float(reference.mean()),
                    "ratio_mean": float(ratio.mean()), "ratio_max": float(ratio.max()), "larger_than_input": larger,
                    "reference_ratio_mean": float(reference_ratio.mean()),
                    "track_minus_reference": float(np.mean(track - reference)),
                    "high_ratio_mean": float(np.mean(high)) if high else None,
                    "high_ratio_max": float(np.max(high)) if high else None,
                    "ratio_mean_not_buried": float(np.mean(audible)) if audible else None,
                    "seams_not_buried": len(audible)}
            out.append(item)
            high_cell = f"{item['high_ratio_mean']:.2f} (max {item['high_ratio_max']:.2f})" if high else "-"
            audible_cell = f"{np.mean(audible):.2f} ({len(audible)})" if audible else "-"
            print(f"{label if rendering == 'paste' else '':<30} {rendering:<9} {len(chosen):>5} {track.mean():>9.2f} "
                  f"{source.mean():>6.2f} {reference.mean():>6.2f} {ratio.mean():>16.2f} {ratio.max():>6.2f} "
                  f"{larger:>3}/{len(chosen):<3} {reference_ratio.mean():>9.2f} {np.mean(track - reference):>9.2f} "
                  f"{high_cell:>19} "
                  f"{audible_cell:>17}")
    return out


# ------------------------------------------------------------------------------------------------


def main() -> None:
    global ADAPT, TOP_OCTAVE_ADAPT, CLIP_TRIM
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="embedded separator weights (default: the shipped ones)")
    parser.add_argument("--high-band", default=None, metavar="auto|on|off|FILE",
                        help="the embedded separator's top-octave network, as separation.high_band (default auto: "
                             "the shipped one when the package has it)")
    parser.add_argument("--quick", action="store_true", help="a small run (3 pairs per rate, 2+2 conversations)")
    parser.add_argument("--pairs-only", action="store_true",
                        help="only the full-band table's 44.1 and 48 kHz pairs of fullband/ clips and their seams (a few "
                             "minutes: for a rendering change that acts only where voices have little solo speech)")
    parser.add_argument("--whole-band-fit", action="store_true",
                        help="fit each window's estimates over the whole band, as before session 34 "
                             "(reconstruct.FIT_GAINS_IN_OWN_BAND off; for the rooms, which have no ablation rows)")
    parser.add_argument("--rooms-only", action="store_true",
                        help="only the reverberant conversations, with the embedded separator (their oracle rows do not "
                             "depend on it), and their seams")
    parser.add_argument("--test-other-only", action="store_true",
                        help="only the full-band table's 16 kHz test-other conversations (the same problem one "
                             "octave down)")
    parser.add_argument("--renderings", default=",".join(BAND_RENDERINGS),
                        help="which renderings to score, comma-separated (rebuild and duplicate always; "
                             f"default all: {','.join(BAND_RENDERINGS)})")
    parser.add_argument("--conversations", type=int, default=None, help="LibriSpeech conversations (default 12)")
    parser.add_argument("--rooms", type=int, default=None, help="reverberant conversations (default 8)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--dev", action="store_true",
                        help="only the development set: 16 kHz conversations of train-clean-100 voices (8 by default)")
    parser.add_argument("--dev-fullband", type=Path, metavar="DIR",
                        help="a development set of full-band pairs at 48 and 44.1 kHz from DIR, one subfolder of "
                             "recordings per speaker (see fullband_dev_cases: Debian's klettres-data voices; "
                             "--conversations pairs per rate, 30 by default)")
    parser.add_argument("--dev-gap", type=float, default=FULLBAND_DEV_GAP_SECONDS, metavar="SECONDS",
                        help="with --dev-fullband: silence between a voice's recordings (default "
                             f"{FULLBAND_DEV_GAP_SECONDS}; 0 makes the denser pairs of session 36)")
    parser.add_argument("--rendering-bands", choices=["both", "network", "extension"], default="both",
                        help="for a separator with a top-octave network at 44.1/48 kHz: average both renderings "
                             "(podsep's default), or only the network's, or only the extension from the "
                             "separator's own band (see podsep.separate.rendering_bands)")
    parser.add_argument("--tilt-shrink", type=float, default=None, metavar="S",
                        help="the embedded separator's above_band_tilt_shrink (default: podsep's)")
    parser.add_argument("--tilt-fit-prior", type=float, default=None, metavar="P",
                        help="the embedded separator's above_band_tilt_fit_prior (default: podsep's)")
    parser.add_argument("--dev-short", choices=["vctk", "unseen"],
                        help="a development set of short pairs at 16 kHz like the evaluation's full-band ones "
                             "(the tilt rule predicts): VCTK training voices or unseen voices (see short_dev_cases; "
                             "--conversations pairs, 30 by default)")
    parser.add_argument("--dev-unseen", action="store_true",
                        help="the development set of voices the separator never trained on instead "
                             "(meeting-sim's dry sources and AMI solo speech; 8 conversations by default)")
    parser.add_argument("--adapt", action="store_true",
                        help="run the embedded separator as podsep's defaults do, adapted to each conversation's "
                             "voices where their solo speech allows (default: as given, separation.adapt off)")
    parser.add_argument("--no-top-octave-adapt", action="store_true",
                        help="with --adapt: adapt the separator only, not its top-octave network "
                             "(separation.adapt_top_octave: false)")
    parser.add_argument("--clip-trim", choices=CLIP_TRIMS, default=CLIP_TRIM,
                        help="how the fullband/ clips are trimmed to their speech (default active; peak40 "
                             "rebuilds sessions 9-34's pairs, whose overlaps often held one voice's lead-in)")
    parser.add_argument("--table-from", type=Path, metavar="JSON",
                        help="print the full-band table and its targets again from an earlier run's --json report "
                             "(with this script's current counting), and stop")
    parser.add_argument("--top-octave-move", type=float, default=None, metavar="F",
                        help="with --adapt: keep the top-octave network this fraction of the way from the incoming "
                             "weights to the fine-tuned ones (podsep.adapt_top_octave.MOVE_FRACTION; default: "
                             "podsep's)")
    parser.add_argument("--adapt-cache", type=Path, metavar="DIR",
                        help="with --adapt: keep each conversation's adapted model in DIR and reuse it on a later "
                             "run with the same weights (to compare rendering rules without adapting again)")
    args = parser.parse_args()
    if args.table_from is not None:
        reprint(args.table_from)
        return
    CLIP_TRIM = args.clip_trim
    ADAPT = args.adapt
    TOP_OCTAVE_ADAPT = not args.no_top_octave_adapt
    chosen = {name.strip() for name in args.renderings.split(",") if name.strip()} | {"rebuild", "duplicate"}
    unknown = chosen - set(BAND_RENDERINGS)
    if unknown:
        parser.error(f"unknown rendering(s) {', '.join(sorted(unknown))}; choose from {', '.join(BAND_RENDERINGS)}")
    BAND_RENDERINGS[:] = [name for name in BAND_RENDERINGS if name in chosen]
    if args.whole_band_fit:
        import podsep.reconstruct

        podsep.reconstruct.FIT_GAINS_IN_OWN_BAND = False
    from podsep.models.embedded.separator import EmbeddedSeparator

    if args.tilt_shrink is not None:
        EmbeddedSeparator.above_band_tilt_shrink = float(args.tilt_shrink)
    if args.tilt_fit_prior is not None:
        EmbeddedSeparator.above_band_tilt_fit_prior = float(args.tilt_fit_prior)
    if args.rendering_bands != "both":
        only_rendering_band(0 if args.rendering_bands == "network" else 1)
    if args.top_octave_move is not None:
        import podsep.adapt_top_octave

        podsep.adapt_top_octave.MOVE_FRACTION = float(args.top_octave_move)
    if ADAPT:
        adapt_once_per_conversation(args.adapt_cache)
    import torch

    torch.set_num_threads(args.threads)
    conversations = args.conversations if args.conversations is not None else (2 if args.quick else 12)
    rooms = args.rooms if args.rooms is not None else (2 if args.quick else 8)
    started = time.perf_counter()
    try:
        separator = embedded(args.weights, args.high_band)
    except ModelError as error:
        raise SystemExit(f"{error}\n(export a checkpoint with scripts/train_separator.py --export PATH and pass "
                         f"--weights PATH)")
    report: dict[str, Any] = {"command": " ".join(sys.argv), "adapt": ADAPT,
                              "top_octave_adapt": ADAPT and TOP_OCTAVE_ADAPT,
                              "top_octave_move_fraction": _move_fraction(), "clip_trim": CLIP_TRIM,
                              "rendering_bands": args.rendering_bands,
                              "tilt_shrink": EmbeddedSeparator.above_band_tilt_shrink,
                              "tilt_fit_prior": EmbeddedSeparator.above_band_tilt_fit_prior,
                              "separator": {
        "weights": str(separator.weights), "sha256": separator.sha256, "recipe": separator.recipe,
        "high_band": str(separator.high_band) if separator.high_band else None,
        "high_band_sha256": separator.high_band_sha256}}
    print(f"embedded separator: {separator.weights} (sha256 {str(separator.sha256)[:16]}, "
          f"{separator.recipe.get('steps')} steps); top-octave network: {separator.high_band or 'none'}")

    if args.pairs_only:
        fullband = fullband_cases(args.quick)
        pair_seams: list[tuple[str, list[dict]]] = []
        report["fullband"] = band_report("Full band, the fullband/ pairs only: inside overlaps, per voice, "
                                         "mean [min, max] (dB); band = model's Nyquist",
                                         score_full_band(fullband, separator, "pairs", pair_seams))
        report["fullband"]["cases"] = cases_by_rate_info(fullband)
        print_pair_overlaps(fullband)
        report["seams"] = {"summary": print_seam_table(pair_seams),
                           "seams": {label: rows for label, rows in pair_seams}}
        finish(report, started, args.json)
        return
    if args.dev_fullband is not None:
        dev_pairs = fullband_dev_cases(args.dev_fullband, args.conversations or 30, args.dev_gap)
        sets = score_full_band(dev_pairs, separator, "dev pairs")
        report["fullband"] = band_report(
            "Full-band development set: inside overlaps, per voice, mean [min, max] (dB)", sets)
        report["fullband"]["cases"] = cases_by_rate_info(dev_pairs)
        report["dev_gap_seconds"] = args.dev_gap
        print_pair_overlaps(dev_pairs)
        finish(report, started, args.json)
        return
    if args.dev or args.dev_unseen or args.dev_short:
        if args.dev_short:
            dev = short_dev_cases(args.dev_short, args.conversations or 30)
            title = f"16 kHz short pairs, {args.dev_short} voices (dev)"
        elif args.dev_unseen:
            with tempfile.TemporaryDirectory(prefix="podsep-unseen-") as folder:
                dev = unseen_dev_cases(args.conversations or 8, Path(folder))
            title = "16 kHz unseen voices (dev)"
        else:
            dev = libri_cases(args.conversations or 8, dev=True)
            title = "16 kHz train-clean-100 (dev)"
        sets = [(f"{title}, {len(dev)} conv, {label}",
                 score_cases(dev, make, 4000.0, eight_k=False), False, 4000.0)
                for label, make in (("embedded 8 kHz", lambda c: separator), ("oracle 8 kHz", lambda c: Oracle(c, 8000)))]
        report["fullband"] = band_report(
            "Development set: inside overlaps, per voice, mean [min, max] (dB); band = 4 kHz", sets)
        finish(report, started, args.json)
        return

    # 1. full band
    seam_groups: list[tuple[str, list[dict]]] = []
    if args.rooms_only:
        report["room"] = score_rooms(rooms, separator, seam_groups, oracles=False)
        report["seams"] = {"summary": print_seam_table(seam_groups),
                           "seams": {label: rows for label, rows in seam_groups}}
        finish(report, started, args.json)
        return
    fullband = fullband_cases(args.quick)
    band_sets = [] if args.test_other_only else score_full_band(fullband, separator, "pairs", seam_groups)
    libri = libri_cases(conversations)
    for label, make in (("embedded 8 kHz", lambda c: separator), ("oracle 8 kHz", lambda c: Oracle(c, 8000))):
        seam_rows = []
        rows = score_cases(libri, make, 4000.0, eight_k=False, seam_rows=seam_rows)
        band_sets.append((f"16 kHz test-other, {len(libri)} conv, {label}", rows, False, 4000.0))
        seam_groups.append((f"16 kHz test-other, {label}", seam_rows))
    report["fullband"] = band_report(
        "Full band: inside overlaps, per voice, mean [min, max] (dB); band = model's Nyquist", band_sets)
    report["fullband"]["cases"] = cases_by_rate_info(fullband)
    print_pair_overlaps(fullband)
    if args.test_other_only:
        finish(report, started, args.json)
        return

    # 2. the room
    report["room"] = score_rooms(rooms, separator, seam_groups)

    # 3. identity
    first48 = fullband[48000][0]
    stereo_source = fullband[44100][0]
    (a_name, a), (b_name, b) = stereo_source.references.items()
    hum = 0.005 * np.sin(2 * np.pi * 60 * np.arange(a.size) / 44100)
    stereo = np.stack([0.9 * a + 0.3 * b + hum, 0.3 * a + 0.9 * b + hum]).astype(np.float32)
    stereo_case = Case("stereo", 44100, stereo, stereo_source.references, stereo_source.diarization)
    rooms_dir = shared_root() / "data" / "meeting-sim"
    noisy = generate_conversation(shared_root() / "data" / "librispeech" / "test-other",
                                  ConversationSpec(duration=30.0, overlap_ratio=0.2, noise_snr=15.0), LIBRI_SEED + 99,
                                  noise_path=rooms_dir / "000_noise__0.wav")
    noisy_case = Case("noisy", 16000, noisy.mixture, noisy.references, noisy.diarization)
    identity_rows = identity([
        (f"48 kHz pair {first48.name}, oracle 16 kHz", first48, Oracle(first48, 16000)),
        ("44.1 kHz stereo pair + 60 Hz hum, oracle 16 kHz", stereo_case, Oracle(stereo_case, 16000)),
        ("16 kHz test-other, noise at 15 dB SNR, embedded", noisy_case, separator),
    ])
    report["identity"] = {"summary": print_identity_table(identity_rows), "runs": identity_rows}

    # 4. seams
    report["seams"] = {"summary": print_seam_table(seam_groups),
                       "seams": {label: rows for label, rows in seam_groups}}
    finish(report, started, args.json)


if __name__ == "__main__":
    main()
