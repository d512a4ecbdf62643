#!/usr/bin/env python
"""Train podsep's embedded separator (a compact Conv-TasNet) on two CPU cores.

Data (training only; the evaluation sets are never read for training):
  * ``librispeech/train-clean-100`` (251 speakers, one utterance each),
  * ``vctk16k`` (107 speakers, two utterances each),
  * ``arctic-sisec`` (8 SiSEC + 2 ARCTIC speakers; not an evaluation set, adds
    studio voices of another recording chain).
Everything is resampled to the model's rate (8 kHz) once and held in memory.

Every batch is mixed on the fly from a generator seeded by ``(seed, step)``, so
a run is deterministic and a resumed run continues exactly where it stopped:
two different speakers, random crops, level differences of +-5 dB, three overlap
shapes (full overlap; one voice hands over to the other with 25-75 % overlap; a
short interjection inside the other's speech, like a podsep window around a
backchannel), reverberation from synthetic room responses on a quarter of the examples
(the *reverberant image* of each speaker is the target: podsep keeps the room)
and coloured noise at 10-30 dB SNR on a quarter (noise is in the mixture, not in
the targets).
Three augmentations are switched on by options, so that runs started without them
stay reproducible: ``--speed-perturbation P`` (each voice resampled by 0.9-1.1
with probability P: new apparent voices), ``--channel-eq P`` (each voice
through its own smooth random equaliser with probability P: other recording
chains) and ``--polarity-flip P`` (each voice negated with probability P: the
same voice to the ear, another waveform to the network); the targets are the
perturbed voices.

Loss: permutation-invariant negative SI-SDR. Optimiser: Adam with a short
warm-up and cosine decay over ``--total-steps``. A checkpoint (model, optimiser,
step, elapsed training time, log) is written atomically every
``--checkpoint-every`` seconds and at the end; rerunning the same command
resumes from it. Held-out SI-SDRi on a fixed set of test-other mixtures is
logged at every checkpoint (a measurement only: nothing is chosen from it).

  nohup python scripts/train_separator.py --run-dir runs/separator > runs/separator.log 2>&1 &
  python scripts/train_separator.py --run-dir runs/separator --export podsep/data/separator.pt

With two cores and one thread per run, a second branch can train at the same
time from a copy of the same checkpoint on another draw of mixtures
(``--run-dir runs/separator-b --stream 1``); ``--export --average-from N
--branch runs/separator-b`` then ships the mean of both branches' snapshots.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import fftconvolve, resample_poly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from podsep.lab.paths import shared_root  # noqa: E402
from podsep.models.embedded.convtasnet import (  # noqa: E402
    ConvTasNet,
    ConvTasNetConfig,
    count_parameters,
    export_speechbrain_folder,
)

CROP_SECONDS = (2.0, 2.5, 3.0, 3.5, 4.0)
REVERB_PROBABILITY = 0.25
NOISE_PROBABILITY = 0.25
# Speed perturbation (tempo and pitch together, as in Kaldi's recipes): each voice
# of a mixture is resampled by one of these factors with this probability, which
# turns the 368 training voices into many more and narrows the gap between
# training and held-out SI-SDR. Only runs started with --speed-perturbation > 0
# (or resumed with it) use it; see REVISIONS.txt of the run.
SPEED_FACTORS = ((9, 10), (19, 20), (21, 20), (11, 10))
# ``--speed-range wide`` (session 9 on): also 0.8, 0.85, 1.15 and 1.2, for more apparent voices
# (a 20 % change moves pitch and formants by about three semitones).
SPEED_FACTORS_WIDE = ((4, 5), (17, 20), (9, 10), (19, 20), (21, 20), (11, 10), (23, 20), (6, 5))
# Recording-chain colouring (--channel-eq P): with probability P each voice of a
# mixture passes through its own smooth random equaliser (gains of up to +-8 dB at
# knots spread over the octaves of the model's band), as if each speaker had been
# recorded with another microphone and room treatment. The 60 minutes of training
# speech come from few recording chains; held-out voices (test-other, podcasts'
# remote guests) come from others. The target is the coloured voice: podsep keeps
# each speaker's sound as recorded.
EQ_KNOT_HZ = (60.0, 150.0, 350.0, 800.0, 1700.0, 3900.0)
EQ_MAX_DB = 8.0


def active_level(x: np.ndarray) -> float:
    """RMS over the samples where the voice is present (a short interjection is not made louder)."""
    active = np.abs(x) > 1e-6
    return float(np.sqrt(np.mean(x[active] ** 2))) + 1e-8 if np.any(active) else 1e-8


#: Where ``--data`` points: corpora packed by ``--pack`` (read instead of ``../shared``).
PACKED_DATA: Path | None = None


def pack_corpora(destination: Path, rate: int) -> None:
    """Write the training and held-out corpora, as the script loads them, to one FLAC and index each.

    A machine lent for a short training run (a GPU machine here) has no
    ``../shared`` and takes 64 MiB of files: at the model's rate, trimmed and
    each utterance scaled to a 0.999 peak (its level is restored from the
    index), the training corpus is about 39 MB and the held-out one 8 MB.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", training_corpus(rate)), ("heldout", heldout_corpus(rate))):
        peaks = [float(np.abs(audio).max()) + 1e-9 for _, audio in items]
        joined = np.concatenate([audio / peak * 0.999 for (_, audio), peak in zip(items, peaks)])
        sf.write(str(destination / f"{name}-{rate}.flac"), joined.astype(np.float32), rate, subtype="PCM_16")
        index = [{"speaker": speaker, "samples": int(audio.size), "peak": peak}
                 for (speaker, audio), peak in zip(items, peaks)]
        (destination / f"{name}-{rate}.json").write_text(json.dumps(index))
        print(f"packed {name}: {len(items)} utterances -> {destination / f'{name}-{rate}.flac'}")


def unpack_corpus(source: Path, name: str, rate: int) -> list[tuple[str, np.ndarray]]:
    """The (speaker, utterance) pairs of one corpus written by :func:`pack_corpora`."""
    joined, file_rate = sf.read(str(source / f"{name}-{rate}.flac"), dtype="float32")
    if file_rate != rate:
        raise SystemExit(f"{source}: packed at {file_rate} Hz, the model runs at {rate} Hz")
    items, offset = [], 0
    for entry in json.loads((source / f"{name}-{rate}.json").read_text()):
        audio = joined[offset : offset + entry["samples"]] * (entry["peak"] / 0.999)
        items.append((entry["speaker"], audio.astype(np.float32)))
        offset += entry["samples"]
    return items


def load_utterance(path: Path, rate: int) -> np.ndarray:
    audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    return _normalised(audio.mean(axis=1), file_rate, rate)


def trim_silence(audio: np.ndarray, rate: int, floor_db: float = -40.0) -> np.ndarray:
    """Drop leading and trailing 20 ms frames more than 40 dB below the loudest one.

    A turn cut from the start of an utterance must start with speech: a target
    that is silent in its window has an SI-SDR of minus infinity and swamps a batch.
    """
    energy, frame = _frame_energies(audio, rate)
    if energy.size == 0:
        return audio
    loud = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 10))
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


def _frame_energies(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Mean power of each whole 20 ms frame (floored above zero), and the frame length in samples."""
    frame = max(1, int(0.02 * rate))
    count = audio.size // frame
    return (audio[: count * frame].reshape(count, frame) ** 2).mean(axis=1) + 1e-20, frame


def training_corpus(rate: int, extra_voices: list[Path] = ()) -> list[tuple[str, np.ndarray]]:
    """(speaker id, utterance) pairs from the training sets only.

    ``extra_voices`` are folders of ``<voice>/*.flac`` utterances, one voice per
    subfolder (``scripts/fetch_debian_voices.py`` writes one): each subfolder is a
    speaker of its own, drawn as often as any other.
    """
    if PACKED_DATA is not None:
        return unpack_corpus(PACKED_DATA, "train", rate) + extra_voice_corpus(extra_voices, rate)
    base = shared_root() / "data"
    items: list[tuple[str, np.ndarray]] = []
    for path in sorted((base / "librispeech" / "train-clean-100").glob("*.flac")):
        items.append(("ls" + path.name.split("-")[0], load_utterance(path, rate)))
    for path in sorted((base / "vctk16k").glob("*.wav")):
        items.append(("vctk" + path.name.split("_")[0], load_utterance(path, rate)))
    for path in sorted((base / "arctic-sisec").glob("*.wav")):
        name = path.stem
        speaker = name.split("_a0")[0] if name.startswith("cmu_arctic") else name
        items.append(("as" + speaker, load_utterance(path, rate)))
    return items + extra_voice_corpus(extra_voices, rate)


def extra_voice_corpus(folders: list[Path], rate: int) -> list[tuple[str, np.ndarray]]:
    """(speaker id, utterance) pairs of ``--extra-voices`` folders (see :func:`training_corpus`)."""
    items: list[tuple[str, np.ndarray]] = []
    for folder in folders:
        voices = sorted(p for p in folder.iterdir() if p.is_dir())
        if not voices:
            raise SystemExit(f"--extra-voices {folder}: no voice folders in it")
        for voice in voices:
            for path in sorted(voice.glob("*.flac")):
                items.append(("xv" + voice.name, load_utterance(path, rate)))
    return items


def heldout_corpus(rate: int) -> list[tuple[str, np.ndarray]]:
    """test-other utterances (evaluation only)."""
    if PACKED_DATA is not None:
        return unpack_corpus(PACKED_DATA, "heldout", rate)
    base = shared_root() / "data" / "librispeech" / "test-other"
    items = []
    for speaker_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for path in sorted(speaker_dir.glob("*.flac")):
            items.append((speaker_dir.name, load_utterance(path, rate)))
    return items


def _ascii_name(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()


def _speech_runs(audio: np.ndarray, rate: int, floor_db: float = -35.0, gap: float = 0.5,
                 shortest: float = 1.0) -> list[tuple[int, int]]:
    """(start, end) samples of the stretches of a one-voice track that hold speech."""
    energy, frame = _frame_energies(audio, rate)
    count = energy.size
    loud = energy > energy.max() * 10 ** (floor_db / 10)
    runs, start, quiet = [], None, 0
    for k, on in enumerate(loud):
        if on:
            start, quiet = (k if start is None else start), 0
        elif start is not None:
            quiet += 1
            if quiet * 0.02 >= gap:
                runs.append((start, k - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        runs.append((start, count))
    return [(a * frame, b * frame) for a, b in runs if (b - a) * 0.02 >= shortest]


def unseen_corpus(rate: int) -> list[tuple[str, np.ndarray]]:
    """Solo speech of voices the separator never trained on, for development decisions.

    The shipping decision between branches needs voices the model has not
    learnt: mixtures of training voices reward memorising them (the held-out
    sets, test-other above all, are for evaluation only and decide nothing).
    Two folders of ``../shared`` that are neither training nor evaluation data
    for the separator hold such voices:

    * ``meeting-sim/000_source<id>.wav``: seven dry LibriSpeech *test-clean*
      speakers (not in train-clean-100, not in test-other), cut at their pauses;
    * ``ami/*.wav``: AMI meeting speakers (headset mix, another recording
      chain), the stretches of at least one second where the reference turns
      (the RTTMs) have that speaker alone: 16 of the fixtures' 27 speakers have any.
    """
    base = shared_root() / "data"
    items: list[tuple[str, np.ndarray]] = []
    for path in sorted((base / "meeting-sim").glob("000_source*.wav")):
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        for start, end in _speech_runs(audio, file_rate):
            items.append(("ms" + path.stem.removeprefix("000_source"), _normalised(audio[start:end], file_rate, rate)))
    files = {_ascii_name(path.stem): path for path in (base / "ami").glob("*.wav")}
    turns: dict[str, list[tuple[float, float, str]]] = {}
    for rttm in sorted((base / "ami").glob("*.rttm")):
        for line in rttm.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) >= 8 and fields[0] == "SPEAKER":
                onset, duration = float(fields[3]), float(fields[4])
                turns.setdefault(_ascii_name(fields[1]), []).append((onset, onset + duration, fields[7]))
    for uri, spans in sorted(turns.items()):
        if uri not in files:
            continue
        audio, file_rate = sf.read(str(files[uri]), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        for start, end, speaker in solo_pieces(spans):
            piece = audio[int(start * file_rate) : int(end * file_rate)]
            items.append(("ami" + _ascii_name(speaker), _normalised(piece, file_rate, rate)))
    return items


def solo_pieces(turns: list[tuple[float, float, str]], shortest: float = 1.0) -> list[tuple[float, float, str]]:
    """(start, end, speaker) stretches of at least ``shortest`` seconds where one speaker talks alone."""
    pieces = []
    for onset, offset, speaker in turns:
        others = sorted((a, b) for a, b, who in turns if who != speaker and b > onset and a < offset)
        cursor = onset
        for a, b in [*others, (offset, offset)]:  # the parts of this turn no one else speaks in
            if min(a, offset) - cursor >= shortest:
                pieces.append((cursor, min(a, offset), speaker))
            cursor = max(cursor, b)
    return pieces


def _normalised(audio: np.ndarray, file_rate: int, rate: int) -> np.ndarray:
    """One utterance at the model's rate, trimmed and scaled as :func:`load_utterance` does."""
    if file_rate != rate:
        g = math.gcd(file_rate, rate)
        audio = resample_poly(audio, rate // g, file_rate // g).astype(np.float32)
    audio = trim_silence(audio - audio.mean(), rate)
    rms = float(np.sqrt(np.mean(audio**2))) + 1e-8
    return (audio / rms * 0.05).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rate: int, rt60: float) -> np.ndarray:
    """A room response: direct path, sparse early reflections, exponential diffuse tail."""
    length = int(rate * min(1.2 * rt60, 0.8)) + 1
    t = np.arange(length) / rate
    decay = np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    rir = rng.standard_normal(length) * decay
    onset = int(rate * rng.uniform(0.002, 0.006))
    rir[:onset] = 0.0
    for _ in range(rng.integers(3, 9)):
        k = int(rate * rng.uniform(0.002, 0.03))
        rir[k] += rng.uniform(-1, 1) * 3.0
    drr_db = rng.uniform(-3, 12)  # direct-to-reverberant ratio
    tail_energy = float(np.sum(rir**2)) + 1e-9
    direct = math.sqrt(tail_energy * 10 ** (drr_db / 10))
    rir[0] = direct
    return (rir / direct).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a 1/f^alpha spectrum, alpha in [0, 2] (white to brown)."""
    alpha = rng.uniform(0.0, 2.0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size) + 1.0
    spectrum /= freqs ** (alpha / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.std(noise) + 1e-9)).astype(np.float32)


def crop(rng: np.random.Generator, audio: np.ndarray, n: int) -> np.ndarray:
    if audio.size >= n:
        start = rng.integers(0, audio.size - n + 1)
        return audio[start : start + n].copy()
    out = np.zeros(n, np.float32)
    start = rng.integers(0, n - audio.size + 1)
    out[start : start + audio.size] = audio
    return out


def fade(x: np.ndarray, rate: int) -> np.ndarray:
    k = min(int(0.01 * rate), x.size // 2)
    if k > 0:
        ramp = np.linspace(0, 1, k, dtype=np.float32)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def piece(rng: np.random.Generator, utterance: np.ndarray, length: int) -> np.ndarray:
    """Up to ``length`` samples of an utterance, from a random point (all of it when shorter)."""
    if utterance.size <= length:
        return utterance.copy()
    start = rng.integers(0, utterance.size - length + 1)
    return utterance[start : start + length].copy()


def place(rng: np.random.Generator, ua: np.ndarray, ub: np.ndarray, n: int, rate: int):
    """Arrange two voices in one window with one of three overlap shapes.

    Partial turns are cut from the utterances themselves (trimmed of silence),
    so the overlapped part always holds speech of both voices.
    """
    mode = rng.uniform()
    sa = np.zeros(n, np.float32)
    sb = np.zeros(n, np.float32)
    if mode < 0.4:  # full overlap
        sa[:], sb[:] = crop(rng, ua, n), crop(rng, ub, n)
    elif mode < 0.8:  # hand-over with 25-75 % overlap: A's turn ends where B's has begun
        ov = int(rng.uniform(0.25, 0.75) * n)
        la = int(rng.integers(ov, n + 1))
        lb = n - la + ov  # the two turns share exactly ov samples
        a = fade(piece(rng, ua, la), rate)
        b = fade(piece(rng, ub, lb), rate)
        sa[la - a.size : la] = a
        sb[n - lb : n - lb + b.size] = b
    else:  # interjection inside the other's speech
        sa[:] = crop(rng, ua, n)
        b = fade(piece(rng, ub, min(int(rng.uniform(0.4, 1.5) * rate), n - 1)), rate)
        start = rng.integers(0, n - b.size + 1)
        sb[start : start + b.size] = b
    if rng.uniform() < 0.5:
        sa, sb = sb, sa
    return sa, sb


def perturb_speed(rng: np.random.Generator, utterance: np.ndarray, probability: float,
                  factors: tuple[tuple[int, int], ...] = SPEED_FACTORS) -> np.ndarray:
    """The utterance played faster or slower (a new apparent voice), with ``probability``."""
    if probability <= 0 or rng.uniform() >= probability:
        return utterance
    up, down = factors[rng.integers(len(factors))]
    return resample_poly(utterance, up, down).astype(np.float32)


def colour(rng: np.random.Generator, voice: np.ndarray, rate: int, probability: float) -> np.ndarray:
    """The voice through a smooth random equaliser (another recording chain), with ``probability``.

    Gains are drawn at a few knots and interpolated over log-frequency, so the
    curve is smooth like a microphone's or a room treatment's, never a comb.
    """
    if probability <= 0 or rng.uniform() >= probability:
        return voice
    gains_db = rng.uniform(-EQ_MAX_DB, EQ_MAX_DB, len(EQ_KNOT_HZ))
    frequencies = np.fft.rfftfreq(voice.size, 1.0 / rate)
    curve_db = np.interp(np.log(np.maximum(frequencies, 1.0)), np.log(EQ_KNOT_HZ), gains_db)
    coloured = np.fft.irfft(np.fft.rfft(voice) * 10 ** (curve_db / 20), voice.size)
    return coloured.astype(np.float32)


def flip_polarity(rng: np.random.Generator, voice: np.ndarray, probability: float) -> np.ndarray:
    """The voice upside down (multiplied by -1), with ``probability``.

    The ear hears no difference, but the network's encoder (learned filters, then
    a ReLU) does: in session 14 the shipped model separated 120 development
    mixtures of its *training* voices 2.7 dB worse with the input negated (9.79
    -> 7.13 dB SI-SDRi) and 120 of voices it never trained on no worse (7.29 ->
    7.79), so it had learnt the training voices' waveforms in their recorded
    polarity (LibriSpeech's speakers come in either, VCTK's nearly all in one).
    A flipped voice is a cheap new apparent voice.
    """
    if rng.uniform() >= probability:
        return voice
    return -voice


def make_example(rng: np.random.Generator, corpus, by_speaker, n: int, rate: int, augment: bool,
                 speed_probability: float = 0.0, eq_probability: float = 0.0,
                 speed_factors: tuple[tuple[int, int], ...] = SPEED_FACTORS, polarity_probability: float = 0.0):
    speakers = list(by_speaker)
    i, j = rng.choice(len(speakers), size=2, replace=False)
    ua = corpus[rng.choice(by_speaker[speakers[i]])][1]
    ub = corpus[rng.choice(by_speaker[speakers[j]])][1]
    if augment and speed_probability > 0:
        ua = perturb_speed(rng, ua, speed_probability, speed_factors)
        ub = perturb_speed(rng, ub, speed_probability, speed_factors)
    sa, sb = place(rng, ua, ub, n, rate)
    if augment and eq_probability > 0:
        sa, sb = colour(rng, sa, rate, eq_probability), colour(rng, sb, rate, eq_probability)
    if augment and polarity_probability > 0:
        sa, sb = flip_polarity(rng, sa, polarity_probability), flip_polarity(rng, sb, polarity_probability)
    if augment and rng.uniform() < REVERB_PROBABILITY:
        rt60 = rng.uniform(0.15, 0.7)
        sa = fftconvolve(sa, synthetic_rir(rng, rate, rt60))[:n].astype(np.float32)
        sb = fftconvolve(sb, synthetic_rir(rng, rate, rt60))[:n].astype(np.float32)
    gain_db = rng.uniform(-5, 5)
    sb = sb * 10 ** (gain_db / 20) * active_level(sa) / active_level(sb)
    level = 10 ** (rng.uniform(-30, -10) / 20) / (np.std(sa + sb) + 1e-8)
    sa, sb = sa * level, sb * level
    mix = sa + sb
    if augment and rng.uniform() < NOISE_PROBABILITY:
        snr = rng.uniform(10, 30)
        mix = mix + coloured_noise(rng, n) * np.std(mix) * 10 ** (-snr / 20)
    return mix.astype(np.float32), np.stack([sa, sb]).astype(np.float32)


def training_batch(corpus, by_speaker, rate: int, seed: int, stream: int, step: int, size: int,
                   speed_probability: float, eq_probability: float = 0.0,
                   speed_factors: tuple[tuple[int, int], ...] = SPEED_FACTORS,
                   polarity_probability: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixtures and sources of one training step: a function of ``(seed, stream, step)`` alone."""
    rng = np.random.default_rng([seed, step] if stream == 0 else [seed, step, stream])
    n = int(CROP_SECONDS[rng.integers(len(CROP_SECONDS))] * rate)
    batch = [make_example(rng, corpus, by_speaker, n, rate, augment=True, speed_probability=speed_probability,
                          eq_probability=eq_probability, speed_factors=speed_factors,
                          polarity_probability=polarity_probability)
             for _ in range(size)]
    return torch.from_numpy(np.stack([b[0] for b in batch])), torch.from_numpy(np.stack([b[1] for b in batch]))


class StepBatches(torch.utils.data.Dataset):
    """Training batches indexed by step, so worker processes can mix them ahead of the model.

    Each batch depends on its step alone, so any number of workers (``--workers``)
    gives the same batches in the same order as mixing them in the training loop.
    """

    def __init__(self, corpus, by_speaker, rate: int, args) -> None:
        self.corpus, self.by_speaker, self.rate = corpus, by_speaker, rate
        self.seed, self.stream, self.size = args.seed, args.stream, args.batch
        self.speed_probability = args.speed_perturbation
        self.eq_probability = args.channel_eq
        self.polarity_probability = getattr(args, "polarity_flip", 0.0)
        self.speed_factors = SPEED_FACTORS_WIDE if getattr(args, "speed_range", "narrow") == "wide" else SPEED_FACTORS

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return training_batch(self.corpus, self.by_speaker, self.rate, self.seed, self.stream, step, self.size,
                              self.speed_probability, self.eq_probability, self.speed_factors,
                              self.polarity_probability)


def group_by_speaker(corpus) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for k, (speaker, _) in enumerate(corpus):
        groups.setdefault(speaker, []).append(k)
    return groups


def si_sdr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """SI-SDR in dB over the last axis."""
    estimate = estimate - estimate.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    noise = estimate - projection
    return 10 * torch.log10(projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps)


def pit_si_sdr(estimates: torch.Tensor, targets: torch.Tensor, floor: float = -30.0) -> torch.Tensor:
    """Best-permutation mean SI-SDR per example (two sources), each source's score floored.

    The floor keeps one hopeless source (a near-silent target) from swamping the batch.
    """
    direct = si_sdr(estimates, targets).clamp_min(floor).mean(-1)
    swapped = si_sdr(estimates.flip(1), targets).clamp_min(floor).mean(-1)
    return torch.maximum(direct, swapped)


def validation_set(rate: int, seed: int, count: int = 60, seconds: float = 4.0):
    corpus = heldout_corpus(rate)
    groups = group_by_speaker(corpus)
    rng = np.random.default_rng([seed, 999_999])
    n = int(seconds * rate)
    examples = [make_example(rng, corpus, groups, n, rate, augment=False) for _ in range(count)]
    mix = torch.from_numpy(np.stack([e[0] for e in examples]))
    src = torch.from_numpy(np.stack([e[1] for e in examples]))
    return mix, src


@torch.inference_mode()
def evaluate(model: ConvTasNet, mix: torch.Tensor, src: torch.Tensor) -> float:
    model.eval()
    out = torch.cat([model(mix[k : k + 10]) for k in range(0, len(mix), 10)])
    model.train()
    est = pit_si_sdr(out, src)
    base = pit_si_sdr(torch.stack([mix, mix], 1), src)
    return float((est - base).mean())


def learning_rate(step: int, args) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` at ``total_steps``.

    ``--schedule-start S`` begins a fresh warm-up and cosine at step S (a warm
    restart), so a finished run can be trained further without a jump to a
    learning rate chosen for its first schedule.
    """
    start = args.schedule_start
    if step - start < args.warmup:
        return args.lr * (step - start + 1) / args.warmup
    progress = min(1.0, (step - start - args.warmup) / max(1, args.total_steps - start - args.warmup))
    floor = args.lr * args.final_lr_fraction
    return floor + 0.5 * (args.lr - floor) * (1 + math.cos(math.pi * progress))


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def average_snapshots(run_dirs: list[Path], first_step: int, final: dict) -> tuple[dict, list[int | str]]:
    """Mean of the model weights saved in ``<run_dir>/snapshots/step-N.pt`` for N >= ``first_step``.

    Averaging the checkpoints of the last, low-learning-rate part of a cosine
    schedule (as in stochastic weight averaging) smooths out the step-to-step
    noise of small-batch training; the steps to average are fixed before
    looking at any score. Several run directories are branches trained from
    one checkpoint on different draws of mixtures (``--stream``, one per CPU
    core): their mean is a "model soup", which averages out more of that noise
    than one branch's tail can. The first directory is the main run.
    """
    snapshots: dict[int | str, Path] = {}
    for number, run_dir in enumerate(run_dirs):
        for path in sorted((run_dir / "snapshots").glob("step-*.pt")):
            step = int(path.stem.split("-")[1])
            if step >= first_step:
                snapshots[step if number == 0 else f"{run_dir.name}:{step}"] = path
    if int(final["step"]) not in snapshots:
        raise SystemExit(f"the final checkpoint (step {final['step']}) has no snapshot; nothing averaged")
    total = None
    for path in snapshots.values():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["config"] != final["config"]:
            raise SystemExit(f"{path} has another network shape")
        model = {k: v.double() for k, v in state["model"].items()}
        total = model if total is None else {k: total[k] + model[k] for k in total}
    mean = {k: (v / len(snapshots)).to(final["model"][k].dtype) for k, v in total.items()}
    return mean, list(snapshots)


def grow_repeats(state_dict: dict, config: ConvTasNetConfig, repeats: int) -> tuple[ConvTasNet, ConvTasNetConfig]:
    """A network with more TCN repeats that computes exactly what ``state_dict`` computes.

    Why: with one CPU core the recipe has levelled off (seventeen warm restarts, the last
    three within 0.13 dB on new voices) while the training voices score only ~0.4 dB
    above new ones, so the network is short of capacity rather than of data. Training a
    wider network from scratch would take days here; growing the trained one does not
    throw its training away. The trained blocks keep their weights and order, and the
    added repeats go after them with their residual projection zeroed, so each added
    block passes its input through unchanged until training moves it off zero (the
    projection's gradient is not zero, so it does). The added blocks' other layers get
    their usual initialisation from torch's generator, seeded before the call.
    """
    if repeats <= config.repeats:
        raise SystemExit(f"--grow-repeats {repeats}: the weights already have {config.repeats} repeats")
    grown = ConvTasNetConfig.from_dict({**config.to_dict(), "repeats": repeats})
    model = ConvTasNet(grown)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # a tensor of another size: another width, not fewer repeats
        raise SystemExit(f"--grow-repeats: the weights have another width ({str(error).splitlines()[-1].strip()})")
    trained_blocks = config.blocks * config.repeats
    added = {f"tcn.{index}." for index in range(trained_blocks, len(model.tcn))}
    if unexpected or any(not any(name.startswith(prefix) for prefix in added) for name in missing):
        raise SystemExit("--grow-repeats: the weights do not fit the network's first repeats")
    with torch.no_grad():
        for block in model.tcn[trained_blocks:]:
            block.project.weight.zero_()
            block.project.bias.zero_()
    return model, grown


def branch_recipe(run_dir: Path) -> dict:
    """What a parallel branch was: its commands, data stream and training time."""
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    return {"run_dir": run_dir.name, "resumes": state.get("resumes", []), "steps": int(state["step"]),
            "train_seconds": float(state["elapsed"])}


def training_data_description(state: dict) -> str:
    """The corpora a run trained on, from its commands (``--extra-voices`` adds a set)."""
    commands = [state["command"], *(r.get("command", "") for r in state.get("resumes", []))]
    data = "librispeech/train-clean-100, vctk16k, arctic-sisec"
    if any("--extra-voices" in command for command in commands):
        data += ", Debian ktuberling-data voices (scripts/fetch_debian_voices.py)"
    return data + " (dynamic mixing)"


def export(run_dir: Path, destination: Path, args) -> None:
    """Write the shipped weights: a plain state dict, the config and the recipe."""
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    weights, averaged = state["model"], []
    if args.average_from is not None:
        weights, averaged = average_snapshots([run_dir, *args.branch], args.average_from, state)
        print(f"averaged the weights of steps {averaged}")
    payload = {
        "config": state["config"],
        "state_dict": weights,
        "recipe": {
            "script": "scripts/train_separator.py",
            "command": state["command"],
            "resumes": state.get("resumes", []),
            "seed": int(state["seed"]),
            "steps": int(state["step"]),
            "train_seconds": float(state["elapsed"]),
            "final_heldout_si_sdri_db": float(state["log"][-1]["val_si_sdri"]) if state["log"] else None,
            "data": training_data_description(state),
            "averaged_steps": averaged,
            "branches": [branch_recipe(branch) for branch in args.branch],
        },
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(payload, destination)
    if args.speechbrain is not None:
        export_speechbrain_folder(ConvTasNetConfig.from_dict(state["config"]), weights, args.speechbrain)  # the shipped (averaged) weights
        print(f"speechbrain-format folder written to {args.speechbrain}")
    digest = hashlib.sha256(destination.read_bytes()).hexdigest()
    print(f"exported {destination} ({destination.stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "separator")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--final-lr-fraction", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--total-steps", type=int, default=6500)
    parser.add_argument("--schedule-start", type=int, default=0,
                        help="step at which the warm-up and cosine schedule (re)start")
    parser.add_argument("--speed-perturbation", type=float, default=0.0,
                        help="probability of resampling each voice by 0.9-1.1")
    parser.add_argument("--speed-range", choices=["narrow", "wide"], default="narrow",
                        help="speed factors of --speed-perturbation: narrow 0.9-1.1 (sessions 2-8), "
                             "wide 0.8-1.2 (see SPEED_FACTORS_WIDE)")
    parser.add_argument("--channel-eq", type=float, default=0.0,
                        help="probability of colouring each voice with a random equaliser (see EQ_KNOT_HZ)")
    parser.add_argument("--polarity-flip", type=float, default=0.0,
                        help="probability of negating each voice (see flip_polarity)")
    parser.add_argument("--extra-voices", type=Path, action="append", default=[],
                        help="also train on these voices: a folder of <voice>/*.flac utterances "
                             "(scripts/fetch_debian_voices.py); each voice is one more speaker")
    parser.add_argument("--stream", type=int, default=0,
                        help="another draw of training mixtures from the same seed (a parallel branch); "
                             "0 = the seed's own stream")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that mix batches ahead of the model (0: in the training loop)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (with a checkpoint) after this many wall-clock minutes of this invocation")
    parser.add_argument("--steps-for-minutes", type=float, default=None,
                        help="set --total-steps from the speed of the first steps, so that the schedule "
                             "ends after about this many minutes (the resolved number is recorded)")
    parser.add_argument("--data", type=Path, default=None,
                        help="read the corpora packed by --pack here instead of ../shared")
    parser.add_argument("--pack", type=Path, default=None,
                        help="write the training and held-out corpora at the model's rate here and exit")
    parser.add_argument("--stop-after-steps", type=int, default=None, help="pause here (resume later)")
    parser.add_argument("--checkpoint-every", type=float, default=240.0, help="seconds")
    parser.add_argument("--config", type=str, default="{}", help="JSON overrides of ConvTasNetConfig")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--export", type=Path, default=None, help="write shipped weights and exit")
    parser.add_argument("--snapshot-from", type=int, default=None,
                        help="keep a copy of every checkpoint from this step on (snapshots/step-N.pt)")
    parser.add_argument("--average-from", type=int, default=None,
                        help="with --export: average the snapshots/step-N.pt weights with N >= this step")
    parser.add_argument("--branch", type=Path, action="append", default=[],
                        help="with --average-from: also average this branch's snapshots (a run dir trained "
                             "from the same checkpoint with another --stream)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="when the run dir has no checkpoint: start from these shipped weights "
                             "(podsep/data/separator.pt) at their recorded step and training time, with a "
                             "fresh optimiser; their recipe's command and resumes carry over")
    parser.add_argument("--grow-repeats", type=int, default=None,
                        help="with --init-from: add TCN repeats up to this many; the added blocks start "
                             "as the identity, so training goes on from exactly the shipped function "
                             "(see grow_repeats)")
    parser.add_argument("--speechbrain", type=Path, default=None,
                        help="with --export: also write a speechbrain-format model folder here")
    args = parser.parse_args()

    if args.export is not None:
        export(args.run_dir, args.export, args)
        return
    if args.grow_repeats is not None and args.init_from is None:
        raise SystemExit("--grow-repeats grows the weights of --init-from; give both")
    global PACKED_DATA
    PACKED_DATA = args.data
    config = ConvTasNetConfig.from_dict({**ConvTasNetConfig().to_dict(), **json.loads(args.config)})
    if args.pack is not None:
        pack_corpora(args.pack, config.sample_rate)
        return

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.run_dir / "checkpoint.pt"

    torch.manual_seed(args.seed)
    model = ConvTasNet(config).to(args.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, elapsed, log = 0, 0.0, []
    command = " ".join(sys.argv)
    resumes: list[dict] = []
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=args.device, weights_only=True)
        config = ConvTasNetConfig.from_dict(state["config"])
        model = ConvTasNet(config).to(args.device)
        model.load_state_dict(state["model"])
        optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
        optimiser.load_state_dict(state["optimiser"])
        step, elapsed, log = int(state["step"]), float(state["elapsed"]), list(state["log"])
        command = state["command"]
        resumes = list(state.get("resumes", []))
        print(f"resumed at step {step}, {elapsed / 60:.1f} min trained", flush=True)
    elif args.init_from is not None:
        shipped = torch.load(args.init_from, map_location=args.device, weights_only=True)
        config = ConvTasNetConfig.from_dict(shipped["config"])
        shipped_repeats = config.repeats
        if args.grow_repeats is not None:
            model, config = grow_repeats(shipped["state_dict"], config, args.grow_repeats)
            model = model.to(args.device)
        else:
            model = ConvTasNet(config).to(args.device)
            model.load_state_dict(shipped["state_dict"])
        optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
        recipe = shipped["recipe"]
        step, elapsed = int(recipe["steps"]), float(recipe["train_seconds"])
        command, resumes = recipe["command"], list(recipe.get("resumes", []))
        if (args.run_dir / "log.json").exists():  # the run's earlier log, copied back from docs/training/
            log = json.loads((args.run_dir / "log.json").read_text())
        digest = hashlib.sha256(args.init_from.read_bytes()).hexdigest()
        # The shipped weights may be a mean of snapshots: say so, because the next
        # steps start from that mean rather than from the run's last checkpoint.
        resumes.append({"step": step, "init_from": f"{args.init_from.name} sha256 {digest[:16]}",
                        "averaged_steps": len(recipe.get("averaged_steps", [])),
                        "optimiser": "fresh Adam (the run's optimiser state was not kept)"})
        if args.grow_repeats is not None:
            resumes[-1]["grown"] = f"TCN repeats {shipped_repeats} -> {config.repeats}; the added blocks started as the identity"
        print(f"started from {args.init_from} (step {step}, {elapsed / 60:.1f} min trained)", flush=True)
    if ckpt_path.exists() or args.init_from is not None:
        resumes.append({"step": step, "command": " ".join(sys.argv)})
    print(f"model: {count_parameters(model) / 1e6:.3f} M parameters, {config}", flush=True)

    rate = config.sample_rate
    corpus = training_corpus(rate, args.extra_voices)
    groups = group_by_speaker(corpus)
    print(f"training data: {len(corpus)} utterances, {len(groups)} speakers, "
          f"{sum(a.size for _, a in corpus) / rate / 60:.1f} min", flush=True)
    val_mix, val_src = validation_set(rate, args.seed)
    val_mix, val_src = val_mix.to(args.device), val_src.to(args.device)

    def checkpoint() -> None:
        val = evaluate(model, val_mix, val_src)
        log.append({"step": step, "minutes": round(elapsed / 60, 2), "val_si_sdri": round(val, 3),
                    "train_si_sdr": round(running, 3), "device": args.device})
        print(json.dumps(log[-1]), flush=True)
        atomic_save({"config": config.to_dict(), "model": model.state_dict(),
                     "optimiser": optimiser.state_dict(), "step": step, "elapsed": elapsed,
                     "log": log, "seed": args.seed, "command": command, "resumes": resumes}, ckpt_path)
        (args.run_dir / "log.json").write_text(json.dumps(log, indent=1))
        if args.snapshot_from is not None and step >= args.snapshot_from:  # for --export --average-from
            (args.run_dir / "snapshots").mkdir(exist_ok=True)
            shutil.copyfile(ckpt_path, args.run_dir / "snapshots" / f"step-{step:05d}.pt")

    def end_step() -> int:
        return args.total_steps if args.stop_after_steps is None else min(args.total_steps, args.stop_after_steps)

    # The speed probe times steps inside the warm-up, whose learning rate does not
    # depend on the total: rerunning with the recorded --total-steps gives the same run.
    probe = None
    if args.steps_for_minutes is not None:
        if step - args.schedule_start + 110 > args.warmup:
            raise SystemExit("--steps-for-minutes needs a fresh schedule (--schedule-start at this step) "
                             "and --warmup of at least 110 steps")
        probe = (step + 10, step + 110)
        # The probe sets the total; until then --total-steps (often still its default, below a
        # resumed run's step) must not end the run before the probe's last step.
        args.total_steps = max(args.total_steps, probe[1] + 1)
    batches = torch.utils.data.DataLoader(
        StepBatches(corpus, groups, rate, args), batch_size=None, sampler=range(step, 1 << 40),
        num_workers=args.workers, prefetch_factor=4 if args.workers else None,
        persistent_workers=False, pin_memory=args.device.startswith("cuda"))
    started = time.monotonic()
    running = float("nan")
    last_ckpt = time.monotonic()
    t_prev = time.monotonic()
    probe_started = 0.0
    model.train()
    for mix, src in batches:
        if step >= end_step():
            break
        if args.max_minutes is not None and time.monotonic() - started > 60 * args.max_minutes:
            print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached", flush=True)
            break
        mix = mix.to(args.device, non_blocking=True)
        src = src.to(args.device, non_blocking=True)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, args)
        score = pit_si_sdr(model(mix), src)
        loss = -score.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        value = float(score.detach().mean())
        running = value if math.isnan(running) else 0.98 * running + 0.02 * value
        step += 1
        now = time.monotonic()
        elapsed += now - t_prev
        t_prev = now
        if probe is not None and step == probe[0]:
            probe_started = now
        if probe is not None and step == probe[1]:
            per_second = (probe[1] - probe[0]) / (now - probe_started)
            remaining = 60 * args.steps_for_minutes - (now - started)
            args.total_steps = step + max(100, int(per_second * remaining) // 100 * 100)
            if resumes:
                resumes[-1]["resolved_total_steps"] = args.total_steps
            else:
                command += f" (resolved: --total-steps {args.total_steps})"
            print(f"{per_second:.1f} steps/s: the schedule ends at step {args.total_steps}", flush=True)
        if now - last_ckpt >= args.checkpoint_every:
            checkpoint()
            last_ckpt = time.monotonic()
            t_prev = last_ckpt  # validation time is not training time
    checkpoint()
    print("done", flush=True)


if __name__ == "__main__":
    main()
