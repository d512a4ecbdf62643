"""Scores for podsep's output: separation quality, leakage and diarization error.

Separation is judged per speaker track against the exact reference from
:mod:`podsep.lab.synth` (or any other ground truth), on the whole file or on chosen
samples: the overlapped regions (where separation has to work) and the solo
regions (where podsep should pass the mixture through untouched). Diarization is
scored with pyannote.metrics so the numbers match the literature.

Conventions for degenerate inputs (never NaN):

* ``si_sdr``/``sdr`` return ``+inf`` for a perfect estimate, including silence
  estimated as silence, and ``-inf`` when there is no target to measure against
  (silent reference) but the estimate is not silent, or when the estimate has no
  component along a non-silent reference (SI-SDR of a silent estimate).
* An empty mask selects nothing: the score is computed on no samples, which counts
  as both signals being silent (``+inf``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..diarization import Diarization

_UEM = Any  # None, (start, end), a list of (start, end) or a pyannote.core Timeline


def _prepare(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.ndim != 1 or estimate.shape != reference.shape:
        raise ValueError(f"reference and estimate must be 1-D and equally long, got {reference.shape} "
                         f"and {estimate.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != reference.shape:
            raise ValueError("mask must be a boolean array as long as the signals")
        reference, estimate = reference[mask], estimate[mask]
    return reference, estimate


def _ratio_db(signal_energy: float, error_energy: float) -> float:
    if error_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / error_energy)


def si_sdr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Scale-invariant signal-to-distortion ratio in dB.

    The reference is scaled to best fit the estimate (``alpha = <e, s> / <s, s>``);
    what remains of the estimate is distortion. No mean is removed: podsep's
    tracks are compared sample-aligned and DC-free already. ``mask`` restricts the
    computation to chosen samples (e.g. overlapped regions only); the scale is
    then fitted on those samples alone.
    """
    reference, estimate = _prepare(reference, estimate, mask)
    reference_energy = float(np.dot(reference, reference))
    if reference_energy == 0.0:
        return math.inf if not np.any(estimate) else -math.inf
    alpha = float(np.dot(estimate, reference)) / reference_energy
    target = alpha * reference
    target_energy = float(np.dot(target, target))
    if target_energy == 0.0:
        return -math.inf  # nothing of the reference in the estimate (a silent estimate, say)
    distortion = estimate - target
    return _ratio_db(target_energy, float(np.dot(distortion, distortion)))


def sdr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Plain signal-to-distortion ratio ``10 log10(|s|^2 / |s - e|^2)`` in dB.

    Unlike :func:`si_sdr` a wrong gain counts as error, which is what matters
    when podsep's tracks are meant to be mixed back at their original level.
    """
    reference, estimate = _prepare(reference, estimate, mask)
    error = reference - estimate
    return _ratio_db(float(np.dot(reference, reference)), float(np.dot(error, error)))


def mean_power(signal: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean square of ``signal`` over ``mask`` (0.0 when the mask selects nothing)."""
    signal = np.asarray(signal, dtype=np.float64)
    if mask is not None:
        signal = signal[np.asarray(mask, dtype=bool)]
    return float(np.mean(signal ** 2)) if signal.size else 0.0


def leakage_db(estimate: np.ndarray, other_speakers_solo_mask: np.ndarray, reference_level: float) -> float:
    """How loud the other speakers still are in one speaker's track, in dB.

    ``leakage = 10 log10(P_leak / reference_level)`` where ``P_leak`` is the mean
    power of ``estimate`` over ``other_speakers_solo_mask``: the samples where
    exactly one *other* speaker talks and this track's speaker is silent, so
    everything the track holds there is leaked speech (or noise). Using solo
    regions keeps the measure clean: in overlaps the track's own speech would
    be counted as leakage.

    ``reference_level`` is a mean power (mean square, linear, not dB) of the
    track's own speech, normally ``mean_power(estimate, own_solo_mask)``: the
    track's level where its speaker talks alone. Taking both powers from the
    estimate makes the number independent of the track's gain (turning a track
    down does not make it look cleaner). -40 dB means the other speakers are 40 dB
    below this speaker; a track that is silent where others talk scores
    ``-inf``, as does a mask that selects nothing (nothing could leak).
    """
    if not reference_level > 0:
        raise ValueError("reference_level must be a positive mean power")
    estimate = np.asarray(estimate, dtype=np.float64)
    mask = np.asarray(other_speakers_solo_mask, dtype=bool)
    if mask.shape != estimate.shape:
        raise ValueError("mask must be as long as the estimate")
    leaked = mean_power(estimate, mask)
    return 10.0 * math.log10(leaked / reference_level) if leaked > 0 else -math.inf


# --------------------------------------------------------------------------------------
# region masks


def speaker_count(diarization: Diarization, sample_rate: float, num_samples: int) -> np.ndarray:
    """How many speakers talk at each sample, ``(num_samples,)`` int."""
    return diarization.activity(sample_rate, num_samples).sum(axis=0)


def overlap_regions_mask(diarization: Diarization, sample_rate: float, num_samples: int) -> np.ndarray:
    """Samples where two or more speakers talk."""
    return speaker_count(diarization, sample_rate, num_samples) >= 2


def solo_mask(diarization: Diarization, sample_rate: float, num_samples: int,
              speakers: Sequence[str] | None = None) -> np.ndarray:
    """Samples where exactly one speaker talks, and (if given) that speaker is one of ``speakers``.

    ``solo_mask(d, sr, n, [me])`` is where ``me`` talks alone; ``solo_mask(d, sr, n,
    others)`` with everyone but ``me`` is the mask :func:`leakage_db` wants.
    """
    activity = diarization.activity(sample_rate, num_samples)
    alone = activity.sum(axis=0) == 1
    if speakers is None:
        return alone
    chosen = [row for row, label in enumerate(diarization.speakers) if label in set(speakers)]
    return alone & activity[chosen].any(axis=0)


def separation_scores(references: dict[str, np.ndarray], estimates: dict[str, np.ndarray],
                      diarization: Diarization, sample_rate: float) -> dict[str, dict[str, float]]:
    """Per-speaker SI-SDR (whole file, overlaps, own solo stretches), SDR and leakage.

    ``references`` and ``estimates`` are keyed by the same speaker labels as
    ``diarization``. Scores over an empty region come out as ``+inf``/``-inf``
    following the module's conventions; filter non-finite values before averaging.
    """
    scores: dict[str, dict[str, float]] = {}
    for speaker, reference in references.items():
        estimate = estimates[speaker]
        num_samples = len(reference)
        overlap = overlap_regions_mask(diarization, sample_rate, num_samples)
        own = diarization.activity(sample_rate, num_samples, [speaker])[0]
        own_solo = solo_mask(diarization, sample_rate, num_samples, [speaker])
        others = [label for label in diarization.speakers if label != speaker]
        others_solo = solo_mask(diarization, sample_rate, num_samples, others)
        own_level = mean_power(estimate, own_solo)
        scores[speaker] = {
            "si_sdr": si_sdr(reference, estimate),
            "sdr": sdr(reference, estimate),
            "si_sdr_overlap": si_sdr(reference, estimate, overlap & own),
            "si_sdr_solo": si_sdr(reference, estimate, own_solo),
            "leakage_db": leakage_db(estimate, others_solo, own_level) if own_level > 0 else math.inf,
        }
    return scores


#: Below this fraction of the reference's energy (-50 dB), a band is taken to be empty.
HIGH_BAND_FLOOR = 1e-5


def high_band_edge_hz(sample_rate: float) -> float:
    """Where "above the separator's band" starts when scoring a track at ``sample_rate``.

    8 kHz for 32 kHz material and up (the 16 kHz separators' Nyquist: what a
    podcast at 44.1/48 kHz loses when an overlap is pasted from a 16 kHz model);
    at lower rates a quarter of the rate, i.e. 4 kHz at 16 kHz: the embedded
    8 kHz separator's Nyquist, the same problem one octave down.
    """
    return 8000.0 if sample_rate >= 32000 else sample_rate / 4.0


class Bands:
    """Brick-wall band parts of one signal from one FFT (for scoring, not for the product)."""

    def __init__(self, signal: np.ndarray, sample_rate: float) -> None:
        self.size = len(signal)
        self.spectrum = np.fft.rfft(np.asarray(signal, np.float64))
        self.freqs = np.fft.rfftfreq(self.size, 1.0 / sample_rate)

    def part(self, low_hz: float | None, high_hz: float | None) -> np.ndarray:
        """The signal's content in ``[low_hz, high_hz)`` (``None``: open-ended)."""
        keep = np.ones(self.freqs.size, bool)
        if low_hz is not None:
            keep &= self.freqs >= low_hz
        if high_hz is not None:
            keep &= self.freqs < high_hz
        return np.fft.irfft(self.spectrum * keep, n=self.size)


def high_band_scores(reference: np.ndarray, estimate: np.ndarray, sample_rate: float, edge_hz: float,
                     mask: np.ndarray) -> dict[str, float]:
    """Above ``edge_hz``, over the masked samples: the estimate's energy relative to the
    reference's (dB; 0 = as bright as it should be, negative = dull) and its SI-SDR.

    A track whose overlaps were pasted from a band-limited separator comes out tens of
    dB too dull here even when its in-band SI-SDR is good; that is what these catch.
    """
    nothing = {"energy_high_db": math.nan, "si_sdr_high": math.nan}
    if not mask.any():
        return nothing
    high_ref = Bands(reference, sample_rate).part(edge_hz, None)[mask]
    high_est = Bands(estimate, sample_rate).part(edge_hz, None)[mask]
    energy_ref, energy_est = float(np.sum(high_ref ** 2)), float(np.sum(high_est ** 2))
    if energy_ref <= HIGH_BAND_FLOOR * float(np.sum(np.asarray(reference, np.float64)[mask] ** 2)):
        return nothing  # the reference itself has no content up there (e.g. 16 kHz speech in a 48 kHz file)
    return {"energy_high_db": 10.0 * math.log10(max(energy_est, 1e-30) / max(energy_ref, 1e-30)),
            "si_sdr_high": si_sdr(high_ref, high_est)}


# --------------------------------------------------------------------------------------
# diarization


def _uem_timeline(uem: _UEM, reference: Diarization, hypothesis: Diarization) -> Any:
    from pyannote.core import Segment, Timeline

    if uem is None:
        # Score everything from 0 to the last turn: the same as pyannote's own guess,
        # without its warning.
        return Timeline([Segment(0.0, max(reference.end, hypothesis.end, 1e-3))])
    if isinstance(uem, Timeline):
        return uem
    if isinstance(uem, tuple) and len(uem) == 2 and all(isinstance(v, (int, float)) for v in uem):
        uem = [uem]
    return Timeline([Segment(float(start), float(end)) for start, end in uem])


def diarization_error(reference: Diarization, hypothesis: Diarization, collar: float = 0.0,
                      skip_overlap: bool = False, uem: _UEM = None) -> dict[str, float]:
    """Diarization error rate, its parts, and Jaccard error rate (pyannote.metrics).

    Returns rates as fractions of the reference speech time (``der``, ``missed``,
    ``false_alarm``, ``confusion``; ``der`` is their sum), the same parts in seconds
    (``*_seconds``, ``total_seconds`` = reference speech scored) and ``jer``.
    Speakers are matched optimally, so labels need not agree; URIs are ignored.

    ``collar`` is pyannote's: the total width, in seconds, of the forgiveness zone
    centred on every reference boundary (half before, half after).
    ``skip_overlap`` leaves out regions where the reference has overlapped speech.
    ``uem``: the scored time, as ``(start, end)``, a list of them, or a pyannote
    ``Timeline``; by default from 0 to the last turn of either side. With no
    reference speech at all, pyannote's conventions apply (DER 1.0 if anything
    was hypothesised, else 0.0).
    """
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    reference_annotation = reference.to_annotation()
    hypothesis_annotation = hypothesis.to_annotation()
    reference_annotation.uri = hypothesis_annotation.uri = "scored"
    timeline = _uem_timeline(uem, reference, hypothesis)
    components = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)(
        reference_annotation, hypothesis_annotation, uem=timeline, detailed=True)
    jaccard = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)(
        reference_annotation, hypothesis_annotation, uem=timeline, detailed=True)
    total = float(components["total"])

    def rate(seconds: float) -> float:
        return seconds / total if total > 0 else (1.0 if seconds > 0 else 0.0)

    return {
        "der": float(components["diarization error rate"]),
        "missed": rate(float(components["missed detection"])),
        "false_alarm": rate(float(components["false alarm"])),
        "confusion": rate(float(components["confusion"])),
        "jer": float(jaccard["jaccard error rate"]),
        "total_seconds": total,
        "missed_seconds": float(components["missed detection"]),
        "false_alarm_seconds": float(components["false alarm"]),
        "confusion_seconds": float(components["confusion"]),
    }
