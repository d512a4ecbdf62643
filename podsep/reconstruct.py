"""Overlaps rebuilt from the original: how each window's full-band mixture is shared between its speakers.

A separator works at its own rate (8 or 16 kHz) and outputs its own idea of
each voice. Pasting that output into a 48 kHz track makes the voice go dull for
the length of every overlap, and a dry separator (SepFormer ``whamr16k``) also
takes the room away. So podsep never pastes: it uses the separator's outputs to
decide, per time-frequency cell, which part of the *original* window belongs to
whom, and the parts always add up to the original.

* **Inside the model's band** the estimates are made consistent with the
  mixture: they are scaled by least squares to the window, and what they leave
  over (or double count) is shared between them in proportion to their energy
  in each cell. Where a second network fills a separator's outputs above its own
  band (the embedded model's top octave), that least-squares fit looks at the
  separator's own band only (FIT_GAINS_IN_OWN_BAND, session 34), so a changed
  octave does not move it. This keeps what a good time-domain separator gives (phase
  included, beyond what a magnitude mask allows) while the sum is exactly the
  mixture.
* **Above the model's band** there is no estimate, so each speaker's share of a
  cell comes from a prediction of their spectrum up there. Each voice's solo
  speech in the recording teaches a small regression (:class:`VoiceSpectrum`):
  from the log energies of twelve bands inside the model's band to those of
  eight bands above it, frame by frame (a voice's hiss follows the shape of its
  spectrum below: a fricative that rises towards 4 kHz goes on rising). In an
  overlap the prediction is made from each separated estimate, and the shares
  are the predicted powers (softened) normalised to one. Measured on the
  development set (``python scripts/score_fullband.py --dev``: 8 conversations
  of training voices, 16 kHz speech under an 8 kHz model, the same problem one
  octave down), SI-SDR above the band went from 6.5 to 8.7 dB with ideal
  estimates and from -3.6 to -1.1 dB with the embedded model, against the
  previous rule (each frame's share of the top of the band, times the solo
  spectrum's tilt). That rule is the regression's prior and stays as the
  fallback for a voice with too little solo speech, its shares softened the
  same way (on the development set: -3.8 -> -2.9 dB with the embedded model,
  6.5 -> 6.4 dB with ideal estimates).
* **The predictions are then fitted to the mixture above the band**, frame by
  frame: the mixture's own spectrum up there is known, so each voice's
  predicted spectrum gets one gain per frame, chosen so that the voices' sum
  matches the mixture's log energies in the eight bands above, pulled towards 1
  by a prior that says how far the separator's estimates are trusted
  (:func:`_fit_to_mixture`). Where the voices' predicted spectra differ in
  shape, the mixture says whose hiss it is: a prediction made from a leaky
  estimate is corrected by what is really there. On the development set
  (session 10, 8 conversations, 16 voices; SI-SDR above the band with podsep's
  embedded model / ideal estimates): no fit -0.1 / 8.7 dB; prior 0.03: 3.3 /
  7.2; 0.1: 3.2 / 8.4; 0.3: 2.0 / 9.1; 1: 0.4 / 9.5; a per-frame tilt as well as
  the gain: 2.2 / 9.3 at best. So a separator says how much it is trusted
  (``above_band_fit_prior``; podsep's embedded model, whose outputs leak between
  the voices, 0.1) and any other (SepFormer, a user's, a test double) gets
  EXTENSION_FIT_PRIOR, 1: ideal estimates gain 0.8 dB with it, and 7 of the 8
  development conversations gain. Where the tilt rule predicts (a voice with
  little solo speech, so only its average tilt is known) the fit is evidence of
  another kind: the mixture's shape above the band is matched by voices whose
  shapes are averages, and good estimates lose by it. On the full-band
  development pairs (``score_fullband.py --dev-fullband``, about 2 s alone per
  voice) ideal 16 kHz estimates gave 10.6 / 7.3 dB above the band at 48 / 44.1
  kHz fitted with prior 1, 11.1 / 8.7 with 3, 11.4 / 9.9 with 10 and 11.4 / 10.0
  unfitted; on the 16 kHz development sets with the tilt rule forced, 6.5 / 5.8
  with 1 and 6.6 / 5.8 with 10 (training / unseen voices). So such a separator's
  tilt-rule windows get TILT_FIT_PRIOR, 10 (``tilt_fit_prior``); the embedded
  model keeps 0.1 there as well (its top-of-band shares leak: with 1 the 16 kHz
  sets lost 2.5 and 1.8 dB), and its tilt-rule shares are softened more than a
  trusted separator's (``tilt_shrink`` 2 instead of EXTENSION_SHRINK's 1.5: a
  leaky estimate's share of the top of the band is a weak clue, and a share
  pushed the wrong way costs a voice with little hiss far more than an even one;
  session 28, short pairs of development voices, above the band: 48 / 44.1 kHz
  klettres pairs 2.55 -> 2.78 / 0.74 -> 1.13 dB, 16 kHz pairs of VCTK / unseen
  voices -1.49 -> -1.06 / 0.20 -> 0.48; ideal estimates lose with it, 9.77 ->
  9.49 / 9.04 -> 8.74, so other separators keep 1.5). The fitted gains are then smoothed over
  about 24 ms each side (EXTENSION_FIT_SMOOTH_SECONDS): one frame's eight band
  energies are little evidence, and on the development set the smoothing moved
  the embedded model from 3.48 to 3.79 dB and ideal estimates from 9.52 to 9.57.
* **Uncertain assignments** are blended towards an even share: a window assigned
  with probability ``p`` of being right gives each speaker ``p`` of their own
  share and ``1 - p`` of the other's, the weighting that minimises the expected
  error when the assignment may be wrong.
* The shares are computed once on the mono mixture and applied to every
  channel, so a stereo image stays where it was.

The transforms are per window (seconds long), so memory never grows with the
recording. Everything here is pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXTENSION_BANDS_INSIDE = 12  # log-spaced bands from EXTENSION_LOW_HZ to the band edge: the regression's inputs
EXTENSION_BANDS_ABOVE = 8  # log-spaced bands from the band edge to Nyquist: its outputs
EXTENSION_LOW_HZ = 150.0
EXTENSION_PRIOR_FRAMES = 30.0  # the tilt rule (below) counts as this many frames of evidence: short solo speech stays near it
EXTENSION_SHRINK = 1.5  # shares follow predicted level differences divided by this (uncertain predictions: softer shares)
EXTENSION_FIT_PRIOR = 1.0  # pull of the per-frame log gains towards 0 in the fit to the mixture, for estimates as good as ideal ones; see above
TILT_FIT_PRIOR = 10.0  # the same pull where the tilt rule predicts (a voice under EXTENSION_MIN_SECONDS alone), for such estimates; see above
FIT_TO_MIXTURE = True  # False: predictions above the band are used as they are (before session 10; the lab compares)
EXTENSION_FIT_SMOOTH_SECONDS = 0.024  # half-width of the Hann window over which the fitted log gains are averaged in time; see _fit_to_mixture
EXTENSION_FIT_ITERATIONS = 6  # Gauss-Newton steps of that fit (converged well before: the problem is 2-3 unknowns a frame)
EXTENSION_RANGE_DB = 50.0  # solo frames quieter than the loudest by more than this are pauses, not voice
EXTENSION_FOLD_FRAMES = 25  # block length of the two-fold check of the regression against the tilt rule
EXTENSION_MIN_SECONDS = 4.0  # less voiced solo speech than this: keep the tilt rule (see VoiceSpectrum)
TOP_BAND_FROM = 0.8  # the "top of the model's band" (whose shares are extended upwards) starts here, as a fraction of its edge
BAND_MARGIN = 0.95  # bins above this fraction of the model's Nyquist are treated as out of band
#: Where a second network fills a separator's outputs above its own band (the embedded model's top
#: octave), fit each window's estimates to it in the separator's own band only: a changed top octave
#: (an episode's adapted network) then cannot move those gains (session 34; False: the whole band,
#: as before; the lab compares).
FIT_GAINS_IN_OWN_BAND = True


@dataclass(frozen=True)
class Transform:
    """The short-time Fourier transform used for a given sample rate.

    Frames are the power of two nearest 32 ms (23 ms at 44.1 kHz, 43 ms at 48 kHz,
    32 ms at 8/16 kHz), with 75 % overlap.
    """

    n_fft: int
    hop: int

    @classmethod
    def for_rate(cls, sample_rate: int) -> "Transform":
        n_fft = int(2 ** max(6, round(np.log2(0.032 * sample_rate))))
        return cls(n_fft, n_fft // 4)

    @property
    def window(self) -> np.ndarray:
        return np.hanning(self.n_fft + 1)[:-1].astype(np.float64)

    def frequencies(self, sample_rate: int) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)

    def forward(self, signal: np.ndarray) -> np.ndarray:
        """``(..., n)`` -> ``(..., bins, frames)``; zero-padded so every sample is covered by full frames."""
        signal = np.asarray(signal, dtype=np.float64)
        n = signal.shape[-1]
        frames = (n + self.n_fft) // self.hop + 1
        total = (frames - 1) * self.hop + self.n_fft
        padded = np.zeros(signal.shape[:-1] + (total,))
        padded[..., self.n_fft: self.n_fft + n] = signal
        index = np.arange(self.n_fft)[None, :] + self.hop * np.arange(frames)[:, None]
        chunks = padded[..., index] * self.window  # (..., frames, n_fft)
        return np.swapaxes(np.fft.rfft(chunks, axis=-1), -1, -2)

    def inverse(self, spectrum: np.ndarray, length: int) -> np.ndarray:
        """Weighted overlap-add, exact inverse of :meth:`forward` for unmodified spectra."""
        chunks = np.fft.irfft(np.swapaxes(spectrum, -1, -2), n=self.n_fft, axis=-1) * self.window
        frames = chunks.shape[-2]
        total = (frames - 1) * self.hop + self.n_fft
        out = np.zeros(chunks.shape[:-2] + (total,))
        norm = np.zeros(total)
        square = self.window ** 2
        for f in range(frames):
            at = f * self.hop
            out[..., at:at + self.n_fft] += chunks[..., f, :]
            norm[at:at + self.n_fft] += square
        out /= np.maximum(norm, 1e-12)
        return out[..., self.n_fft: self.n_fft + length]


def _log_bands(freqs: np.ndarray, low_hz: float, high_hz: float, count: int) -> np.ndarray:
    """``(count, bins)`` averaging matrix of ``count`` log-spaced bands between the two frequencies.

    A band too narrow to hold a bin takes the nearest one, so the matrix has the
    same shape at every sample rate.
    """
    edges = np.geomspace(low_hz, high_hz, count + 1)
    matrix = np.zeros((count, freqs.size))
    for index in range(count):
        members = (freqs >= edges[index]) & (freqs < edges[index + 1])
        if not np.any(members):
            members = np.arange(freqs.size) == np.argmin(np.abs(freqs - np.sqrt(edges[index] * edges[index + 1])))
        matrix[index, members] = 1.0 / members.sum()
    return matrix


@dataclass(frozen=True)
class VoiceSpectrum:
    """One speaker's spectrum in their solo speech, at the input's rate, for a separator of band ``band_hz``.

    ``profile`` is the mean power per bin. ``extension`` maps a frame's log band
    energies inside the band (plus a constant) to its log band energies above
    it; it is ``None`` under EXTENSION_MIN_SECONDS of voiced solo speech. That
    floor is a hedge, not a development figure: on development conversations the
    regression beat the tilt rule even from 2 s of solo speech, but on one 48 kHz
    pair (about 2 s alone each, a 16 kHz-band separator) it did not, and a
    podcast gives every voice far more than 4 s alone.
    """

    sample_rate: int
    band_hz: float
    profile: np.ndarray
    extension: np.ndarray | None

    @classmethod
    def measure(cls, voice: np.ndarray, sample_rate: int, band_hz: float) -> "VoiceSpectrum":
        """Learn a voice from its solo speech (mono, at ``sample_rate``)."""
        transform = Transform.for_rate(sample_rate)
        voice = np.asarray(voice, dtype=np.float64)
        if voice.size < transform.n_fft:
            return cls(sample_rate, band_hz, np.ones(transform.n_fft // 2 + 1), None)
        power = np.abs(transform.forward(voice)) ** 2
        profile = power.mean(axis=-1) + 1e-20
        inside, above, _ = cls._bands(transform.frequencies(sample_rate), band_hz)
        level = 10 * np.log10(power.sum(axis=0) + 1e-20)
        voiced = level > level.max() - EXTENSION_RANGE_DB
        extension = None
        if voiced.sum() * transform.hop >= EXTENSION_MIN_SECONDS * sample_rate:
            features = cls._features(power[:, voiced], inside)
            targets = 10 * np.log10(above @ power[:, voiced] + 1e-20).T
            extension = _fit_extension(features, targets)
        return cls(sample_rate, band_hz, profile, extension)

    @classmethod
    def average(cls, voices: Sequence["VoiceSpectrum"]) -> "VoiceSpectrum":
        """A generic voice (for an output assigned to nobody): the mean profile, and the mean
        regression, which predicts the mean in dB of what the voices would predict."""
        extensions = [v.extension for v in voices]
        extension = np.mean(extensions, axis=0) if all(e is not None for e in extensions) else None
        first = voices[0]
        return cls(first.sample_rate, first.band_hz, np.mean([v.profile for v in voices], axis=0), extension)

    @staticmethod
    def _bands(freqs: np.ndarray, band_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        edge = BAND_MARGIN * band_hz
        inside = _log_bands(freqs, EXTENSION_LOW_HZ, edge, EXTENSION_BANDS_INSIDE)
        above = _log_bands(freqs, edge, max(freqs[-1], edge) * 1.001 + 1.0, EXTENSION_BANDS_ABOVE)  # Nyquist included
        return inside, above, freqs >= edge

    @staticmethod
    def _features(power: np.ndarray, inside: np.ndarray) -> np.ndarray:
        levels = 10 * np.log10(inside @ power + 1e-20).T  # (frames, bands)
        return np.concatenate([levels, np.ones((levels.shape[0], 1))], axis=1)

    def predict_above(self, power: np.ndarray, freqs: np.ndarray) -> np.ndarray | None:
        """Predicted power of this voice in every bin above the band, per frame, from ``power`` (bins, frames)
        of its estimate; ``None`` without an extension."""
        if self.extension is None:
            return None
        inside, above, out_of_band = self._bands(freqs, self.band_hz)
        predicted_db = self._features(power, inside) @ self.extension  # (frames, bands above)
        predicted_db = np.clip(predicted_db, -250.0, 250.0)  # silent frames stay finite
        members = (above > 0).astype(np.float64)  # (bands, bins)
        per_bin = members.T @ (10 ** (predicted_db / 10)).T  # (bins, frames): each bin its band's level
        band_mean = members.T @ (above @ self.profile)  # the solo profile's level of each bin's band
        shape = self.profile / np.maximum(band_mean, 1e-30)  # ... and the bin's place within its band
        return (per_bin * shape[:, None])[out_of_band]


def _tilt_rule(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The tilt rule as regression weights: every band above follows the top band inside, at the mean offset."""
    rule = np.zeros((features.shape[1], targets.shape[1]))
    rule[EXTENSION_BANDS_INSIDE - 1] = 1.0
    rule[-1] = (targets - features[:, [EXTENSION_BANDS_INSIDE - 1]]).mean(axis=0)
    return rule


def _ridge_towards(features: np.ndarray, targets: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Least squares pulled towards ``prior``, which counts as EXTENSION_PRIOR_FRAMES frames of evidence."""
    strength = EXTENSION_PRIOR_FRAMES * float(np.mean(features ** 2))
    gram = features.T @ features + strength * np.eye(features.shape[1])
    return np.linalg.solve(gram, features.T @ targets + strength * prior)


def _fit_extension(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Regression weights from log band energies inside the band to those above it, for one voice.

    Each band above keeps the regression only where it predicts the voice's own
    unseen solo frames better than the tilt rule does (two-fold, in blocks of
    EXTENSION_FOLD_FRAMES frames so that neighbouring frames do not leak across);
    elsewhere it keeps the rule.
    """
    blocks = (np.arange(features.shape[0]) // EXTENSION_FOLD_FRAMES) % 2 == 0
    error_regression = np.zeros(targets.shape[1])
    error_rule = np.zeros(targets.shape[1])
    for held in (blocks, ~blocks):
        if held.sum() < 2 or (~held).sum() < 2:
            continue
        rule = _tilt_rule(features[~held], targets[~held])
        weights = _ridge_towards(features[~held], targets[~held], rule)
        error_regression += np.sum((features[held] @ weights - targets[held]) ** 2, axis=0)
        error_rule += np.sum((features[held] @ rule - targets[held]) ** 2, axis=0)
    rule = _tilt_rule(features, targets)
    extension = _ridge_towards(features, targets, rule)
    keep_rule = error_rule <= error_regression
    extension[:, keep_rule] = rule[:, keep_rule]
    # The fit is of log energies; shares are of powers. A log-normal's mean lies above exp(mean log)
    # by half its variance, so a voice whose hiss is less predictable is not under-counted.
    residual = targets - features @ extension
    extension[-1] += np.mean(residual ** 2, axis=0) * np.log(10) / 20
    return extension


def consistent_gains(mixture: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Least-squares gains so that ``sum(gain_i * source_i)`` best matches the mono mixture."""
    basis = sources.astype(np.float64).T
    if not np.any(basis):
        return np.ones(sources.shape[0])
    gains, *_ = np.linalg.lstsq(basis, mixture.astype(np.float64), rcond=None)
    return gains


def spectral_gains(spectrum: np.ndarray, estimates: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Real least-squares gains so that ``sum(gain_i * estimate_i)`` best matches ``spectrum`` in the
    bins ``keep`` (``spectrum``: ``(bins, frames)``, ``estimates``: ``(k, bins, frames)``)."""
    k = estimates.shape[0]
    basis = estimates[:, keep, :].reshape(k, -1)
    target = spectrum[keep, :].reshape(-1)
    gram = np.real(basis.conj() @ basis.T)
    if not np.any(gram):
        return np.ones(k)
    gains, *_ = np.linalg.lstsq(gram, np.real(basis.conj() @ target), rcond=None)
    return gains


def rebuild_window(mixture: np.ndarray, sources: np.ndarray, sample_rate: int, *, band_hz: float | None = None,
                   voices: Sequence[VoiceSpectrum] | None = None, certainty: float = 1.0,
                   fit_prior: float | None = None, tilt_fit_prior: float | None = None,
                   tilt_shrink: float | None = None,
                   also: Sequence[tuple[float | None, Sequence[VoiceSpectrum] | None]] = (),
                   fit_below_hz: float | None = None) -> np.ndarray:
    """Share the window's original audio between the separated sources.

    ``mixture``: ``(channels, n)`` original audio; ``sources``: ``(k, n)`` the
    separator's outputs in the order of the speakers they were assigned to, at
    ``sample_rate``; ``band_hz``: the highest frequency the separator saw (``None``:
    full band); ``voices``: each source's :class:`VoiceSpectrum` (measured at
    ``sample_rate`` for ``band_hz``; ``None``: even tilt); ``certainty``: how sure the assignment is, 0 (a guess: even
    shares) to 1; ``fit_prior``: how far the estimates are trusted above the band
    (:func:`_fit_to_mixture`; ``None``: EXTENSION_FIT_PRIOR) where the per-voice
    regression predicts, ``tilt_fit_prior`` the same where the tilt rule does
    (``None``: TILT_FIT_PRIOR); ``tilt_shrink``: how much the tilt rule's shares are
    softened (``None``: EXTENSION_SHRINK, as the regression's); ``fit_below_hz``: fit the
    estimates to the window below this frequency only (``None``: over the whole band; see
    FIT_GAINS_IN_OWN_BAND); ``also``: further
    ``(band_hz, voices)`` renderings averaged with this one (each adds up to the
    mixture, so the average does; see ``podsep.separate.rendering_bands``), sharing
    its transforms. Returns
    ``(k, channels, n)`` whose sum over ``k`` is ``mixture`` (to float precision).

    The shares (how a cell's residual is split, and every cell above the band)
    are decided once, on the mono mixture; inside the band each channel gets its
    own least-squares fit of the estimates, so a voice panned left stays left.
    """
    mixture = np.atleast_2d(np.asarray(mixture, dtype=np.float64))
    sources = np.asarray(sources, dtype=np.float64)
    k, n = sources.shape
    transform = Transform.for_rate(sample_rate)
    freqs = transform.frequencies(sample_rate)
    mono = mixture.mean(axis=0)
    mono_spectrum = transform.forward(mono)  # the shares' evidence above the band, and a mono input's own spectrum
    fit_bins = freqs < fit_below_hz if fit_below_hz is not None and fit_below_hz < freqs[-1] else None
    source_spectra = transform.forward(sources) if fit_bins is not None else None

    def fitted(signal: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
        """The estimates' spectra, scaled to fit ``signal`` (whose spectrum is ``spectrum``)."""
        if source_spectra is None:
            return transform.forward(sources * consistent_gains(signal, sources)[:, None])
        return source_spectra * spectral_gains(spectrum, source_spectra, fit_bins)[:, None, None]

    mono_estimates = fitted(mono, mono_spectrum)  # (k, bins, frames)
    prior = EXTENSION_FIT_PRIOR if fit_prior is None else float(fit_prior)
    tilt_prior = TILT_FIT_PRIOR if tilt_fit_prior is None else float(tilt_fit_prior)
    tilt_softening = EXTENSION_SHRINK if tilt_shrink is None else float(tilt_shrink)
    mixture_power = np.abs(mono_spectrum) ** 2
    renderings = [_shares(mono_estimates, mixture_power, freqs, band, band_voices, prior, tilt_prior, tilt_softening,
                          frame_seconds=transform.hop / sample_rate)
                  for band, band_voices in ((band_hz, voices), *also)]
    certainty = float(np.clip(certainty, 0.0, 1.0))
    out = np.zeros((k, mixture.shape[0], n))
    for channel, signal in enumerate(mixture):
        if mixture.shape[0] == 1:
            spectrum, estimates = mono_spectrum, mono_estimates  # (bins, frames): the mono mixture is this channel
        else:
            spectrum = transform.forward(signal)
            estimates = fitted(signal, spectrum)
        residual = spectrum - estimates.sum(axis=0)
        parts = np.zeros((k,) + spectrum.shape, dtype=complex)
        for weights, high, inside in renderings:
            parts[:, inside] += (estimates + weights * residual)[:, inside]
            if high is not None:
                parts[:, ~inside] += high * spectrum[~inside]
        parts /= len(renderings)
        if certainty < 1.0:
            parts = certainty * parts + (1.0 - certainty) / k * spectrum
        out[:, channel] = transform.inverse(parts, n)
    return out.astype(np.float32)


def _shares(estimates: np.ndarray, mixture_power: np.ndarray, freqs: np.ndarray, band_hz: float | None,
            voices: Sequence[VoiceSpectrum] | None, fit_prior: float, tilt_fit_prior: float,
            tilt_shrink: float, *, frame_seconds: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """How cells are shared, decided on the mono mixture (``mixture_power``: its ``(bins, frames)`` power).

    Returns the residual weights ``(k, bins, frames)`` (each estimate's share of
    what the estimates together miss, by energy), the real shares of the bins
    above the band ``(k, bins above, frames)`` (``None`` at full band) and the
    in-band bin mask.
    """
    k = estimates.shape[0]
    power = np.abs(estimates) ** 2
    total = power.sum(axis=0)
    weights = np.where(total > 0, power / np.maximum(total, 1e-30), 1.0 / k)
    if band_hz is None or band_hz >= freqs[-1]:
        return weights, None, np.ones(freqs.size, dtype=bool)
    inside = freqs < BAND_MARGIN * band_hz
    predicted = [v.predict_above(p, freqs) for v, p in zip(voices, power)] if voices is not None else [None]
    if all(p is not None for p in predicted):
        levels, prior, shrink = np.stack(predicted), fit_prior, EXTENSION_SHRINK
    else:
        levels, prior, shrink = _tilted_top_shares(power, freqs, band_hz, inside, voices), tilt_fit_prior, tilt_shrink
    if FIT_TO_MIXTURE:
        _, bands_above, _ = VoiceSpectrum._bands(freqs, band_hz)  # the regression's own bands above
        smoothing = EXTENSION_FIT_SMOOTH_SECONDS / frame_seconds
        levels = _fit_to_mixture(levels, mixture_power[~inside], bands_above[:, ~inside], prior,
                                 smoothing_frames=smoothing)
    # Either rule's predictions are uncertain: shares follow their level differences divided by
    # EXTENSION_SHRINK (for the tilt rule, development set, tilt row of score_fullband --dev: embedded
    # -3.8 -> -2.9 dB above the band, ideal estimates 6.5 -> 6.4), or by the separator's own
    # tilt_shrink where the tilt rule predicts (the embedded model's leaky shares: 2, session 28).
    return weights, _normalised(levels ** (1.0 / shrink)), inside


def _fit_to_mixture(levels: np.ndarray, mixture_power: np.ndarray, bands: np.ndarray,
                    prior: float = EXTENSION_FIT_PRIOR, *, smoothing_frames: float = 0.0) -> np.ndarray:
    """Each voice's predicted power above the band, rescaled per frame so that the voices add up to the mixture.

    ``levels``: ``(k, bins above, frames)`` predicted powers; ``mixture_power``:
    the mixture's ``(bins above, frames)``; ``bands``: the ``(bands, bins above)``
    averaging matrix of the eight log-spaced bands above the band
    (:meth:`VoiceSpectrum._bands`). In those bands the model of the mixture's log energy is ``log sum_k g_k P_k``;
    the log gains ``log g_k`` of each frame minimise the squared error of that
    model plus ``prior`` times their own squares (the prediction is evidence
    too: the more it is trusted, the larger the prior), by a few Gauss-Newton
    steps. Where the voices' predictions differ in shape, the mixture's shape
    moves their gains apart; a mixture louder or quieter than predicted
    everywhere raises or lowers them all, though not always by the same amount.
    (Leaving that common level free, so that only shape could move the voices
    apart, measured slightly worse on the development set at prior 0.1: 3.0 /
    8.3 dB against 3.2 / 8.4.)

    Each frame's fit sees only that frame's eight band energies, so its gains
    flicker; a voice's real level changes over tens of milliseconds, not from
    one 8 ms hop to the next. So the log gains are then averaged over a Hann
    window of ``smoothing_frames`` frames each side (session 11, development set,
    session-10 weights, embedded / ideal estimates: not smoothed 3.48 / 9.52 dB;
    16 ms 3.75 / 9.56; 24 ms 3.79 / 9.57; 40 ms 3.77 / 9.58; 64 ms 3.61 / 9.57;
    16 and 64 ms with a window not renormalised at the ends, which gave the same
    figures as this one at 24 and 40 ms).
    """
    k, _, frames = levels.shape
    predicted = np.einsum("bn,knf->kbf", bands, levels)  # (k, bands, frames)
    observed = bands @ mixture_power  # (bands, frames)
    floor = 1e-12 * max(float(observed.max(initial=0.0)), 1e-30)  # silent bands: finite logs, no pull
    log_observed = np.log(observed + floor)
    log_gains = np.zeros((k, frames))
    pull = prior * np.eye(k)
    for _ in range(EXTENSION_FIT_ITERATIONS):
        scaled = predicted * np.exp(log_gains)[:, None, :] + floor / k
        total = scaled.sum(axis=0)
        residual = np.log(total) - log_observed  # (bands, frames)
        jacobian = scaled / total  # d log(total) / d log g_k: each voice's share of the band
        hessian = np.einsum("kbf,jbf->fkj", jacobian, jacobian) + pull[None]
        gradient = np.einsum("kbf,bf->fk", jacobian, residual) + prior * log_gains.T
        step = np.linalg.solve(hessian, -gradient[..., None])[..., 0]  # (frames, k)
        log_gains += np.clip(step.T, -3.0, 3.0)  # no wild first steps where a band is nearly silent
    return levels * np.exp(_smoothed_over_frames(log_gains, smoothing_frames))[:, None, :]


def _smoothed_over_frames(values: np.ndarray, half_width: float) -> np.ndarray:
    """``values`` ``(k, frames)`` averaged over a Hann window of ``half_width`` frames on each side.

    Near the ends the window is renormalised over the frames that exist, so the
    first and last frames keep their own level instead of being pulled to 0.
    """
    taps = min(int(round(half_width)), (values.shape[-1] - 1) // 2)  # np.convolve's "same" needs the window no longer
    if taps < 1:
        return values
    kernel = np.hanning(2 * taps + 3)[1:-1]  # 2 * taps + 1 weights, all positive
    coverage = np.convolve(np.ones(values.shape[-1]), kernel, mode="same")
    return np.stack([np.convolve(row, kernel, mode="same") / coverage for row in values])


def _normalised(shares: np.ndarray) -> np.ndarray:
    total = shares.sum(axis=0, keepdims=True)
    return np.where(total > 0, shares / np.maximum(total, 1e-300), 1.0 / shares.shape[0])


def _tilted_top_shares(power: np.ndarray, freqs: np.ndarray, band_hz: float, inside: np.ndarray,
                       voices: Sequence[VoiceSpectrum] | None) -> np.ndarray:
    """The fallback rule: each frame's share of the top of the band, times each voice's solo tilt above it."""
    k = power.shape[0]
    top = (freqs >= TOP_BAND_FROM * band_hz) & inside
    if not np.any(top):
        top = inside
    energy = power[:, top].sum(axis=1)  # (k, frames): each frame on its own (smoothing measured no better)
    frame_total = energy.sum(axis=0, keepdims=True)
    share_top = np.where(frame_total > 0, energy / np.maximum(frame_total, 1e-30), 1.0 / k)
    outside = ~inside
    if voices is not None:
        profiles = np.stack([v.profile for v in voices])
        tilt = profiles[:, outside] / np.maximum(profiles[:, top].mean(axis=1, keepdims=True), 1e-30)
    else:
        tilt = np.ones((k, int(outside.sum())))
    return share_top[:, None, :] * tilt[:, :, None]  # (k, bins above, frames)
