"""Metrics against cases small enough to work out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from podsep.diarization import Diarization
from podsep.lab.metrics import (
    diarization_error,
    leakage_db,
    mean_power,
    overlap_regions_mask,
    sdr,
    separation_scores,
    si_sdr,
    solo_mask,
    speaker_count,
)


@pytest.fixture
def speech_like() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Amplitude-modulated noise: not white, not zero-mean-perfect, like speech enough.
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 40 * np.pi, 160_000)) ** 2
    return (rng.standard_normal(160_000) * envelope).astype(np.float32)


def _noise_at_snr(reference: np.ndarray, snr_db: float, seed: int, orthogonal: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(reference.shape[0])
    reference = reference.astype(np.float64)
    if orthogonal:  # no component along the reference: SI-SDR is then exactly the SNR
        noise -= np.dot(noise, reference) / np.dot(reference, reference) * reference
    return noise * math.sqrt(np.dot(reference, reference) / np.dot(noise, noise) / 10 ** (snr_db / 10))


# -- SI-SDR / SDR ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.3, 7.0, -2.0])
def test_si_sdr_of_scaled_copy_is_huge(speech_like: np.ndarray, scale: float) -> None:
    assert si_sdr(speech_like, scale * speech_like) > 100.0


def test_si_sdr_of_white_noise_at_10_db(speech_like: np.ndarray) -> None:
    exact = _noise_at_snr(speech_like, 10.0, seed=1, orthogonal=True)
    assert si_sdr(speech_like, speech_like + exact) == pytest.approx(10.0, abs=1e-6)
    plain = _noise_at_snr(speech_like, 10.0, seed=2, orthogonal=False)
    assert si_sdr(speech_like, speech_like + plain) == pytest.approx(10.0, abs=0.1)
    assert sdr(speech_like, speech_like + plain) == pytest.approx(10.0, abs=1e-6)  # SDR is exactly the SNR


def test_sdr_counts_gain_errors_si_sdr_does_not(speech_like: np.ndarray) -> None:
    half = 0.5 * speech_like
    assert si_sdr(speech_like, half) > 100.0
    # |s|^2 / |s - s/2|^2 = 4
    assert sdr(speech_like, half) == pytest.approx(10 * math.log10(4), abs=1e-6)
    # and with noise on top, SI-SDR - SDR is the gain penalty
    noisy = 2.0 * (speech_like + _noise_at_snr(speech_like, 20.0, seed=3, orthogonal=True))
    assert si_sdr(speech_like, noisy) == pytest.approx(20.0, abs=1e-6)
    assert sdr(speech_like, noisy) < 1.0


def test_masked_scores_see_only_the_masked_samples(speech_like: np.ndarray) -> None:
    half = speech_like.shape[0] // 2
    first, second = np.zeros(speech_like.shape, bool), np.zeros(speech_like.shape, bool)
    first[:half], second[half:] = True, True
    noise = np.zeros(speech_like.shape)
    noise[half:] = _noise_at_snr(speech_like[half:], 5.0, seed=4, orthogonal=True)
    estimate = speech_like + noise
    assert si_sdr(speech_like, estimate, first) == math.inf
    assert sdr(speech_like, estimate, first) == math.inf
    assert si_sdr(speech_like, estimate, second) == pytest.approx(5.0, abs=1e-6)
    assert sdr(speech_like, estimate, second) == pytest.approx(5.0, abs=1e-6)
    # unmasked: error energy is the same, signal energy doubles: +3 dB
    assert sdr(speech_like, estimate) == pytest.approx(5.0 + 10 * math.log10(
        np.sum(speech_like.astype(float) ** 2) / np.sum(speech_like[half:].astype(float) ** 2)), abs=1e-6)


def test_silent_signals_give_infinities_not_nan() -> None:
    silence, tone = np.zeros(1000), np.sin(np.arange(1000) * 0.1)
    assert si_sdr(silence, silence) == math.inf
    assert sdr(silence, silence) == math.inf
    assert si_sdr(silence, tone) == -math.inf
    assert sdr(silence, tone) == -math.inf
    assert si_sdr(tone, silence) == -math.inf
    assert sdr(tone, silence) == pytest.approx(0.0)  # the whole reference is error
    empty = np.zeros(1000, dtype=bool)
    assert si_sdr(tone, silence, empty) == math.inf
    assert si_sdr(tone, tone, np.ones(1000, dtype=bool)) == math.inf


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError):
        si_sdr(np.zeros(10), np.zeros(11))
    with pytest.raises(ValueError):
        sdr(np.zeros(10), np.zeros(10), np.zeros(10))  # mask must be boolean


# -- leakage -----------------------------------------------------------------------------


def test_leakage_is_other_speech_power_over_own_speech_power() -> None:
    rng = np.random.default_rng(5)
    own, other = np.zeros(20_000, bool), np.zeros(20_000, bool)
    own[:10_000], other[10_000:] = True, True
    estimate = np.where(own, rng.standard_normal(20_000), 10 ** (-30 / 20) * rng.standard_normal(20_000))
    # normalise the two halves so the powers are exact
    estimate[own] /= math.sqrt(mean_power(estimate, own))
    estimate[other] /= math.sqrt(mean_power(estimate, other)) / 10 ** (-30 / 20)
    assert leakage_db(estimate, other, mean_power(estimate, own)) == pytest.approx(-30.0, abs=1e-9)
    louder = 7.0 * estimate  # gain does not change leakage measured against the track itself
    assert leakage_db(louder, other, mean_power(louder, own)) == pytest.approx(-30.0, abs=1e-9)
    clean = np.where(own, estimate, 0.0)
    assert leakage_db(clean, other, 1.0) == -math.inf
    assert leakage_db(estimate, np.zeros(20_000, bool), 1.0) == -math.inf
    with pytest.raises(ValueError):
        leakage_db(estimate, other, 0.0)


# -- masks -------------------------------------------------------------------------------


def test_region_masks_follow_the_turns() -> None:
    # A 0-2 s, B 1-3 s, C 4-5 s at 10 Hz
    diarization = Diarization.from_turns([(0, 2, "A"), (1, 3, "B"), (4, 5, "C")])
    count = speaker_count(diarization, 10, 60)
    assert list(count[:30]) == [1] * 10 + [2] * 10 + [1] * 10
    overlap = overlap_regions_mask(diarization, 10, 60)
    assert np.flatnonzero(overlap).tolist() == list(range(10, 20))
    assert np.flatnonzero(solo_mask(diarization, 10, 60)).tolist() == list(range(10)) + list(range(20, 30)) + list(range(40, 50))
    assert np.flatnonzero(solo_mask(diarization, 10, 60, ["A"])).tolist() == list(range(10))
    assert np.flatnonzero(solo_mask(diarization, 10, 60, ["A", "C"])).tolist() == list(range(10)) + list(range(40, 50))


def test_separation_scores_of_perfect_and_leaky_tracks() -> None:
    rng = np.random.default_rng(6)
    diarization = Diarization.from_turns([(0, 2, "A"), (1, 3, "B")])
    rate = 1000
    activity = diarization.activity(rate, 3000)
    references = {s: rng.standard_normal(3000) * activity[i] for i, s in enumerate(diarization.speakers)}
    perfect = separation_scores(references, references, diarization, rate)
    assert all(v == math.inf for v in (perfect["A"]["si_sdr"], perfect["A"]["si_sdr_overlap"], perfect["B"]["sdr"]))
    assert perfect["A"]["leakage_db"] == -math.inf
    leaky = {"A": references["A"] + 0.01 * references["B"], "B": references["B"]}
    scores = separation_scores(references, leaky, diarization, rate)
    assert scores["A"]["leakage_db"] == pytest.approx(-40.0, abs=1.0)  # 0.01 amplitude, same power
    assert scores["A"]["si_sdr_solo"] == math.inf
    assert 35.0 < scores["A"]["si_sdr_overlap"] < 45.0


# -- diarization error ---------------------------------------------------------------------


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_der_of_a_known_rttm_pair(tmp_path: Path) -> None:
    # Reference: 10 s of speech (A 0-6, B 6-10). Hypothesis misses B's last second,
    # labels A's last 2 s as the other speaker, and adds 0.5 s of speech at 11 s.
    reference = Diarization.from_rttm(_write(tmp_path / "ref.rttm", [
        "SPEAKER rec 1 0.000 6.000 <NA> <NA> A <NA> <NA>",
        "SPEAKER rec 1 6.000 4.000 <NA> <NA> B <NA> <NA>",
    ]))
    hypothesis = Diarization.from_rttm(_write(tmp_path / "hyp.rttm", [
        "SPEAKER other 1 0.000 4.000 <NA> <NA> spk1 <NA> <NA>",
        "SPEAKER other 1 4.000 5.000 <NA> <NA> spk2 <NA> <NA>",
        "SPEAKER other 1 11.000 0.500 <NA> <NA> spk2 <NA> <NA>",
    ]))
    result = diarization_error(reference, hypothesis, uem=(0.0, 12.0))
    assert result["total_seconds"] == pytest.approx(10.0)
    assert result["missed"] == pytest.approx(0.1)
    assert result["false_alarm"] == pytest.approx(0.05)
    assert result["confusion"] == pytest.approx(0.2)
    assert result["der"] == pytest.approx(0.35)
    assert result["missed_seconds"] == pytest.approx(1.0)


def test_der_one_second_missed_out_of_ten() -> None:
    reference = Diarization.from_turns([(0, 10, "A")])
    hypothesis = Diarization.from_turns([(0, 9, "x")])
    result = diarization_error(reference, hypothesis)
    assert result["der"] == pytest.approx(0.1)
    assert result["missed"] == pytest.approx(0.1)
    assert result["false_alarm"] == result["confusion"] == 0.0
    assert diarization_error(reference, reference)["der"] == 0.0
    # the UEM limits what is scored
    assert diarization_error(reference, hypothesis, uem=(0.0, 5.0))["der"] == 0.0


def test_collar_forgives_boundary_shifts() -> None:
    reference = Diarization.from_turns([(0, 10, "A")])
    hypothesis = Diarization.from_turns([(0.2, 10, "x")])
    assert diarization_error(reference, hypothesis)["der"] == pytest.approx(0.02)
    assert diarization_error(reference, hypothesis, collar=0.5)["der"] == pytest.approx(0.0)


def test_skip_overlap_removes_overlapped_reference() -> None:
    # A 0-8, B 6-10; the hypothesis has one speaker 0-10.
    # Full: 12 s of reference speaker time; 2 s missed (6-8, two talk, one found),
    # 2 s confused (8-10 is B, hypothesis is mapped to A): DER 4/12.
    # skip_overlap: 6-8 goes; A 0-6 correct, 8-10 confused: DER 2/8.
    reference = Diarization.from_turns([(0, 8, "A"), (6, 10, "B")])
    hypothesis = Diarization.from_turns([(0, 10, "x")])
    assert diarization_error(reference, hypothesis)["der"] == pytest.approx(4 / 12)
    assert diarization_error(reference, hypothesis, skip_overlap=True)["der"] == pytest.approx(2 / 8)


def test_jer_on_a_simple_case() -> None:
    # A is found exactly (Jaccard error 0); only half of B is found (error 0.5): JER = 0.25.
    reference = Diarization.from_turns([(0, 10, "A"), (10, 20, "B")])
    hypothesis = Diarization.from_turns([(0, 10, "x"), (10, 15, "y")])
    result = diarization_error(reference, hypothesis)
    assert result["jer"] == pytest.approx(0.25)
    assert result["der"] == pytest.approx(0.25)
    assert diarization_error(reference, reference)["jer"] == pytest.approx(0.0)


def test_high_band_scores_see_a_dull_copy_and_ignore_band_limited_references() -> None:
    from podsep.lab.metrics import Bands, high_band_edge_hz, high_band_scores

    rate = 48000
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(rate).astype(np.float64)
    mask = np.zeros(rate, bool)
    mask[rate // 4 : 3 * rate // 4] = True
    edge = high_band_edge_hz(rate)
    assert edge == 8000.0 and high_band_edge_hz(16000) == 4000.0

    same = high_band_scores(reference, reference, rate, edge, mask)
    assert abs(same["energy_high_db"]) < 1e-9 and same["si_sdr_high"] > 100

    dull = Bands(reference, rate).part(None, 7000.0)  # what pasting a 16 kHz model's output gives
    scores = high_band_scores(reference, dull, rate, edge, mask)
    assert scores["energy_high_db"] < -60

    half = high_band_scores(reference, reference * 0.5, rate, edge, mask)
    assert abs(half["energy_high_db"] + 6.02) < 0.01

    narrow = Bands(reference, rate).part(None, 7000.0)  # a reference with nothing above the edge
    assert math.isnan(high_band_scores(narrow, reference, rate, edge, mask)["energy_high_db"])
    assert math.isnan(high_band_scores(reference, reference, rate, edge, np.zeros(rate, bool))["si_sdr_high"])
