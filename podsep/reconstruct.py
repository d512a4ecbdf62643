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
  in each cell. This keeps what a good time-domain separator gives (phase
  included, beyond what a magnitude mask allows) while the sum is exactly the
  mixture.
* **Above the model's band** there is no estimate, so each speaker's share of a
  cell is extended from their share of the top of the model's band in the same
  frame, shaped by their own spectrum measured in their solo speech (a voice
  bright at 4 kHz is bright at 10 kHz).
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

from dataclasses import dataclass

import numpy as np

TOP_BAND_FROM = 0.8  # the "top of the model's band" (whose shares are extended upwards) starts here, as a fraction of its edge
BAND_MARGIN = 0.95  # bins above this fraction of the model's Nyquist are treated as out of band


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


def power_profile(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean power spectrum of a (solo) voice, on the bins of :meth:`Transform.for_rate`."""
    transform = Transform.for_rate(sample_rate)
    if signal.size < transform.n_fft:
        return np.ones(transform.n_fft // 2 + 1)
    spectrum = transform.forward(signal)
    return np.mean(np.abs(spectrum) ** 2, axis=-1) + 1e-20


def consistent_gains(mixture: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Least-squares gains so that ``sum(gain_i * source_i)`` best matches the mono mixture."""
    basis = sources.astype(np.float64).T
    if not np.any(basis):
        return np.ones(sources.shape[0])
    gains, *_ = np.linalg.lstsq(basis, mixture.astype(np.float64), rcond=None)
    return gains


def rebuild_window(mixture: np.ndarray, sources: np.ndarray, sample_rate: int, *, band_hz: float | None = None,
                   profiles: np.ndarray | None = None, certainty: float = 1.0) -> np.ndarray:
    """Share the window's original audio between the separated sources.

    ``mixture``: ``(channels, n)`` original audio; ``sources``: ``(k, n)`` the
    separator's outputs in the order of the speakers they were assigned to, at
    ``sample_rate``; ``band_hz``: the highest frequency the separator saw (``None``:
    full band); ``profiles``: ``(k, bins)`` each speaker's solo power spectrum (or
    ``None``); ``certainty``: how sure the assignment is, 0 (a guess: even
    shares) to 1. Returns ``(k, channels, n)`` whose sum over ``k`` is
    ``mixture`` (to float precision).

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
    mono_estimates = transform.forward(sources * consistent_gains(mono, sources)[:, None])  # (k, bins, frames)
    weights, high, inside = _shares(mono_estimates, freqs, band_hz, profiles)
    certainty = float(np.clip(certainty, 0.0, 1.0))
    out = np.zeros((k, mixture.shape[0], n))
    for channel, signal in enumerate(mixture):
        spectrum = transform.forward(signal)  # (bins, frames)
        if mixture.shape[0] == 1:
            estimates = mono_estimates
        else:
            estimates = transform.forward(sources * consistent_gains(signal, sources)[:, None])
        parts = np.empty((k,) + spectrum.shape, dtype=complex)
        parts[:, inside] = (estimates + weights * (spectrum - estimates.sum(axis=0)))[:, inside]
        if high is not None:
            parts[:, ~inside] = high * spectrum[~inside]
        if certainty < 1.0:
            parts = certainty * parts + (1.0 - certainty) / k * spectrum
        out[:, channel] = transform.inverse(parts, n)
    return out.astype(np.float32)


def _shares(estimates: np.ndarray, freqs: np.ndarray, band_hz: float | None,
            profiles: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """How cells are shared, decided on the mono mixture.

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
    edge = BAND_MARGIN * band_hz
    inside = freqs < edge
    top = (freqs >= TOP_BAND_FROM * band_hz) & inside
    if not np.any(top):
        top = inside
    energy = power[:, top].sum(axis=1)  # (k, frames): each frame on its own (smoothing measured no better)
    frame_total = energy.sum(axis=0, keepdims=True)
    share_top = np.where(frame_total > 0, energy / np.maximum(frame_total, 1e-30), 1.0 / k)
    outside = ~inside
    if profiles is not None:
        profiles = np.asarray(profiles, dtype=np.float64)
        tilt = profiles[:, outside] / np.maximum(profiles[:, top].mean(axis=1, keepdims=True), 1e-30)
    else:
        tilt = np.ones((k, int(outside.sum())))
    high = share_top[:, None, :] * tilt[:, :, None]  # (k, bins above, frames)
    high /= np.maximum(high.sum(axis=0, keepdims=True), 1e-30)
    return weights, high, inside

