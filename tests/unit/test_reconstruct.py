"""How a voice's spectrum above a separator's band is learnt from its solo speech (podsep.reconstruct)."""

from __future__ import annotations

import numpy as np
import pytest

import podsep.reconstruct
from podsep.reconstruct import Transform, VoiceSpectrum, _fit_to_mixture, _smoothed_over_frames, rebuild_window

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


def test_the_fit_to_the_mixture_corrects_leaky_estimates_above_the_band(monkeypatch):
    """Estimates that leak 45 % of each voice into the other predict the wrong hiss; the mixture's
    own spectrum above the band (bright at the top: the bright voice's) pulls the shares back."""
    rng = np.random.default_rng(6)
    bright = VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, 0.0)), RATE, BAND)
    dull = VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, -12.0)), RATE, BAND)
    a, b = _coloured(rng, 2.0, 0.0), _coloured(rng, 2.0, -12.0)
    a, b = a / np.std(a), b / np.std(b)
    leaky = np.stack([0.55 * _lowpass(a) + 0.45 * _lowpass(b), 0.55 * _lowpass(b) + 0.45 * _lowpass(a)])
    mixture = (a + b)[None, :].astype(np.float32)
    reference = _highpass(a)

    def bright_above_snr(prior: float | None) -> float:
        monkeypatch.setattr(podsep.reconstruct, "FIT_TO_MIXTURE", prior is not None)
        parts = rebuild_window(mixture, leaky.astype(np.float32), RATE, band_hz=BAND, voices=[bright, dull],
                               fit_prior=prior)
        assert np.allclose(parts.sum(axis=0), mixture, atol=1e-5)
        error = reference - _highpass(parts[0, 0].astype(np.float64))
        return float(10 * np.log10(np.sum(reference ** 2) / np.sum(error ** 2)))

    fitted, unfitted = bright_above_snr(0.1), bright_above_snr(None)  # 0.1: the embedded model's
    assert fitted >= unfitted + 2.0, (fitted, unfitted)


@pytest.mark.parametrize("prior", [0.1, 1.0])
def test_the_fit_moves_voices_apart_by_the_shape_of_the_mixture(prior):
    """Predictions that match the mixture stay; a louder mixture raises every voice; a mixture
    with four times more of one voice than predicted moves the gains that voice's way (far, when
    the estimates are trusted little)."""
    freqs = Transform.for_rate(RATE).frequencies(RATE)
    _, bands, out_of_band = VoiceSpectrum._bands(freqs, BAND)
    above = freqs[out_of_band]
    rising = np.tile(((above / above[0]) ** 2)[:, None], (1, 5))
    falling = np.tile(((above[0] / above) ** 2)[:, None], (1, 5))
    levels = np.stack([rising, falling])

    def gains(mixture: np.ndarray) -> np.ndarray:
        return _fit_to_mixture(levels, mixture, bands[:, out_of_band], prior).mean(axis=(1, 2)) / levels.mean(axis=(1, 2))

    assert np.allclose(gains(rising + falling), 1.0, atol=1e-6)
    assert np.all(gains(4.0 * (rising + falling)) > 1.1)
    more_rising, more_falling = gains(4.0 * rising + falling), gains(rising + 4.0 * falling)
    assert more_rising[0] / more_rising[1] > 2.0 * more_falling[0] / more_falling[1], (more_rising, more_falling)
    if prior <= 0.1:
        assert more_rising[0] > 3.0 * more_rising[1] and more_falling[1] > 3.0 * more_falling[0]


def test_fitted_gains_are_smoothed_over_time_without_pulling_the_ends():
    """The per-frame fit is noisy: its log gains are averaged over neighbouring frames, a level held
    for a while stays where it is (at the ends too), and a frame-to-frame flicker is flattened."""
    frames = 40
    held = np.stack([np.full(frames, 1.5), np.full(frames, -2.0)])
    assert np.allclose(_smoothed_over_frames(held, 2.0), held)
    flicker = np.stack([np.where(np.arange(frames) % 2 == 0, 1.0, -1.0)] * 2)
    assert np.std(_smoothed_over_frames(flicker, 2.0)) < 0.25 * np.std(flicker)
    assert _smoothed_over_frames(flicker, 0.4) is flicker  # under one frame: nothing to smooth
    step = np.stack([np.r_[np.zeros(frames // 2), np.ones(frames // 2)]] * 2)
    smoothed = _smoothed_over_frames(step, 2.0)
    assert np.allclose(smoothed[:, :17], 0.0) and np.allclose(smoothed[:, -17:], 1.0)  # a change stays local
    few = np.array([[0.0, 1.0, 0.0], [2.0, 2.0, 2.0]])  # a window of three frames: the Hann window shrinks to fit
    assert _smoothed_over_frames(few, 2.0).shape == few.shape and np.allclose(_smoothed_over_frames(few, 2.0)[1], 2.0)


@pytest.mark.parametrize("prior", [0.1, 1.0, None])
def test_silence_above_the_band_stays_finite(monkeypatch, prior):
    monkeypatch.setattr(podsep.reconstruct, "FIT_TO_MIXTURE", prior is not None)
    rng = np.random.default_rng(7)
    voices = [VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, t)), RATE, BAND) for t in (0.0, -6.0)]
    low = np.stack([_lowpass(rng.standard_normal(RATE)) for _ in range(2)])
    mixture = low.sum(axis=0)[None, :].astype(np.float32)  # nothing at all above the band
    parts = rebuild_window(mixture, low.astype(np.float32), RATE, band_hz=BAND, voices=voices, fit_prior=prior)
    assert np.all(np.isfinite(parts)) and np.allclose(parts.sum(axis=0), mixture, atol=1e-5)


def test_each_rule_above_the_band_is_fitted_with_its_own_prior():
    """``fit_prior`` acts where the per-voice regression predicts, ``tilt_fit_prior`` where the tilt
    rule does (voices under 4 s alone): a trusted separator's tilt-rule windows are fitted loosely
    (session 27, development pairs) while its regression windows keep their fit."""
    rng = np.random.default_rng(9)
    a, b = _coloured(rng, 1.0, 0.0), _coloured(rng, 1.0, -9.0)
    mixture = (a + b)[None, :].astype(np.float32)
    estimates = np.stack([_lowpass(0.8 * a + 0.2 * b), _lowpass(0.8 * b + 0.2 * a)]).astype(np.float32)

    def render(voices, **priors):
        return rebuild_window(mixture, estimates, RATE, band_hz=BAND, voices=voices, **priors)

    learnt = [VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, t)), RATE, BAND) for t in (0.0, -9.0)]
    short = [VoiceSpectrum.measure(_coloured(rng, 2.0, t), RATE, BAND) for t in (0.0, -9.0)]
    assert all(v.extension is not None for v in learnt) and all(v.extension is None for v in short)
    assert np.array_equal(render(learnt, fit_prior=0.1, tilt_fit_prior=0.1),
                          render(learnt, fit_prior=0.1, tilt_fit_prior=10.0))
    assert not np.allclose(render(learnt, fit_prior=0.1), render(learnt, fit_prior=10.0), atol=1e-4)
    assert np.array_equal(render(short, fit_prior=0.1, tilt_fit_prior=10.0),
                          render(short, fit_prior=1.0, tilt_fit_prior=10.0))
    assert not np.allclose(render(short, tilt_fit_prior=0.1), render(short, tilt_fit_prior=10.0), atol=1e-4)
    assert np.array_equal(render(short), render(short, tilt_fit_prior=podsep.reconstruct.TILT_FIT_PRIOR))


def test_the_tilt_rules_shares_are_softened_by_the_separators_own_shrink():
    """``tilt_shrink`` softens the shares only where the tilt rule predicts: a larger one moves each
    voice's part above the band towards an even split (the embedded model's leaky estimates, session 28),
    the regression's windows keep EXTENSION_SHRINK, and the parts still add up to the mixture."""
    rng = np.random.default_rng(11)
    a, b = _coloured(rng, 1.0, 0.0), _coloured(rng, 1.0, -9.0)
    mixture = (a + b)[None, :].astype(np.float32)
    estimates = np.stack([_lowpass(0.8 * a + 0.2 * b), _lowpass(0.8 * b + 0.2 * a)]).astype(np.float32)

    def render(voices, **trust):
        return rebuild_window(mixture, estimates, RATE, band_hz=BAND, voices=voices, fit_prior=0.1,
                              tilt_fit_prior=0.1, **trust)

    learnt = [VoiceSpectrum.measure(_levels(rng, _coloured(rng, 6.0, t)), RATE, BAND) for t in (0.0, -9.0)]
    short = [VoiceSpectrum.measure(_coloured(rng, 2.0, t), RATE, BAND) for t in (0.0, -9.0)]
    assert np.array_equal(render(learnt, tilt_shrink=1.5), render(learnt, tilt_shrink=4.0))
    assert np.array_equal(render(short), render(short, tilt_shrink=podsep.reconstruct.EXTENSION_SHRINK))
    ratios = []
    for shrink in (1.5, 4.0):
        parts = render(short, tilt_shrink=shrink)
        assert np.allclose(parts.sum(axis=0), mixture, atol=1e-5)
        bright, dull = (_above_power(_highpass(p[0])) for p in parts)
        ratios.append(dull / bright)
    assert ratios[0] < ratios[1] < 1.0  # softer: the dull voice gets more of the hiss, never more than half


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


def _highpass(signal: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfft(signal)
    spectrum[np.fft.rfftfreq(signal.size, 1 / RATE) < BAND] = 0
    return np.fft.irfft(spectrum, signal.size)


def _lowpassed(signal: np.ndarray, edge_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(signal)
    spectrum[np.fft.rfftfreq(signal.size, 1 / RATE) >= edge_hz] = 0
    return np.fft.irfft(spectrum, signal.size)


def test_estimates_fitted_in_the_separators_band_ignore_what_fills_them_above_it():
    from podsep.reconstruct import spectral_gains

    rng = np.random.default_rng(3)
    a, b = _coloured(rng, 2.0, -3.0), 0.3 * _coloured(rng, 2.0, 0.0)
    mixture = (a + b)[None]
    below = [_lowpassed(v, 3900.0) for v in (a, b)]
    # Two fillings of the top octave: one that follows the voices, one that gives voice b all of it
    # and more (so that over the whole band the gains must move).
    top = [v - low for v, low in zip((a, b), below)]
    faithful = np.stack([below[0] + top[0], below[1] + top[1]])
    skewed = np.stack([below[0], below[1] + 3.0 * (top[0] + top[1])])
    fit = 0.95 * BAND
    outputs = [rebuild_window(mixture, 0.5 * sources, RATE, fit_below_hz=fit) for sources in (faithful, skewed)]
    transform = Transform.for_rate(RATE)
    inside = transform.frequencies(RATE) < 3500.0
    for output in outputs:
        np.testing.assert_allclose(output.sum(axis=0), mixture, atol=1e-5)  # the parts still add up
    low = [transform.forward(o[:, 0])[:, inside] for o in outputs]
    own_change = np.abs(low[0] - low[1]).max() / np.abs(low[0]).max()
    # Over the whole band, the skewed octave moves the gains and with them the band's parts (the
    # own-band fit leaves only the STFT's leakage from the octave into the band).
    whole = [rebuild_window(mixture, 0.5 * sources, RATE) for sources in (faithful, skewed)]
    moved = [transform.forward(o[:, 0])[:, inside] for o in whole]
    whole_change = np.abs(moved[0] - moved[1]).max() / np.abs(moved[0]).max()
    assert whole_change > 0.02 and own_change < 0.25 * whole_change, (own_change, whole_change)
    # The gains themselves: exact for estimates that are the voices, up to a scale.
    spectra = transform.forward(np.stack(below))
    target = transform.forward(2.0 * below[0] + 0.5 * below[1])
    keep = transform.frequencies(RATE) < fit
    np.testing.assert_allclose(spectral_gains(target, spectra, keep), [2.0, 0.5], rtol=1e-6)


def test_only_a_separator_filled_above_its_own_band_is_fitted_in_that_band(monkeypatch):
    from types import SimpleNamespace

    from podsep.separate import gain_fit_band

    with_network = SimpleNamespace(sample_rate=8000, band_rate=16000)
    assert gain_fit_band(with_network, 48000) == gain_fit_band(with_network, 16000) == 0.95 * 4000
    assert gain_fit_band(with_network, 8000) is None  # the input is the model's own rate: nothing above
    assert gain_fit_band(SimpleNamespace(sample_rate=8000, band_rate=8000), 48000) is None  # no network
    assert gain_fit_band(SimpleNamespace(sample_rate=16000), 48000) is None  # e.g. SepFormer: one model
    monkeypatch.setattr(podsep.reconstruct, "FIT_GAINS_IN_OWN_BAND", False)
    assert gain_fit_band(with_network, 48000) is None
