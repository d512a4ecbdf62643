"""How a voice's spectrum above a separator's band is learnt from its solo speech (podsep.reconstruct)."""

from __future__ import annotations

import numpy as np

from podsep.reconstruct import Transform, VoiceSpectrum, rebuild_window

RATE = 16000
BAND = 4000.0


def _coloured(rng: np.random.Generator, seconds: float, tilt_db_per_octave: float) -> np.ndarray:
    """Noise with a fixed spectral slope (a stand-in for a voice's hiss)."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 50.0)
    spectrum *= 10 ** (tilt_db_per_octave * np.log2(freqs / 1000.0) / 20)
    return np.fft.irfft(spectrum, n)


def _levels(rng: np.random.Generator, signal: np.ndarray, span_db: float = 30.0) -> np.ndarray:
    """The signal with its loudness stepping every 0.2 s (like syllables), so a level can be learnt."""
    step = int(0.2 * RATE)
    gains = 10 ** (rng.uniform(-span_db, 0, size=signal.size // step + 1) / 20)
    return signal * np.repeat(gains, step)[:signal.size]


def _above_power(signal: np.ndarray) -> float:
    transform = Transform.for_rate(RATE)
    freqs = transform.frequencies(RATE)
    return float(np.mean(np.abs(transform.forward(signal)[freqs >= 0.95 * BAND]) ** 2))


def test_a_voice_learnt_from_solo_speech_predicts_its_power_above_the_band():
    rng = np.random.default_rng(3)
    voice = VoiceSpectrum.measure(_levels(rng, _coloured(rng, 8.0, -3.0)), RATE, BAND)
    assert voice.extension is not None
    transform = Transform.for_rate(RATE)
    freqs = transform.frequencies(RATE)
    for gain in (0.05, 1.0):  # an unseen stretch of the same voice, at two loudnesses 26 dB apart
        probe = gain * _coloured(rng, 1.0, -3.0)
        power = np.abs(transform.forward(probe)) ** 2
        predicted = voice.predict_above(power, freqs)
        truth = power[freqs >= 0.95 * BAND]
        error_db = 10 * np.log10(predicted.mean() / truth.mean())
        assert abs(error_db) < 2.0, (gain, error_db)


def test_shares_above_the_band_follow_the_brighter_voice_and_add_up():
    rng = np.random.default_rng(4)
    bright = VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, 0.0)), RATE, BAND)
    dull = VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, -12.0)), RATE, BAND)
    a, b = _coloured(rng, 2.0, 0.0), _coloured(rng, 2.0, -12.0)
    a, b = a / np.std(a), b / np.std(b)  # equal loudness: the bright voice owns the top octave
    in_band = [_lowpass(x) for x in (a, b)]
    mixture = (a + b)[None, :].astype(np.float32)
    parts = rebuild_window(mixture, np.stack(in_band).astype(np.float32), RATE, band_hz=BAND, voices=[bright, dull])
    assert np.allclose(parts.sum(axis=0), mixture, atol=1e-5)
    assert _above_power(parts[0, 0]) > 10 * _above_power(parts[1, 0])
    truth_ratio = _above_power(a) / _above_power(a + b)
    got_ratio = _above_power(parts[0, 0]) / _above_power(a + b)
    assert abs(10 * np.log10(got_ratio / truth_ratio)) < 1.5


def test_too_little_solo_speech_keeps_the_tilt_rule():
    rng = np.random.default_rng(5)
    voice = VoiceSpectrum.measure(_coloured(rng, 3.0, -3.0), RATE, BAND)
    assert voice.extension is None
    assert voice.predict_above(np.ones((Transform.for_rate(RATE).n_fft // 2 + 1, 4)),
                               Transform.for_rate(RATE).frequencies(RATE)) is None


def _lowpass(signal: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfft(signal)
    spectrum[np.fft.rfftfreq(signal.size, 1 / RATE) >= BAND] = 0
    return np.fft.irfft(spectrum, signal.size)
