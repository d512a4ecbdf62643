"""The top octave of a 16 kHz window shared between the embedded separator's voices.

The embedded separator works at 8 kHz, so its voices stop at 4 kHz. Above that,
podsep used to *predict* each voice's share of the mixture from its solo
spectrum (:mod:`podsep.reconstruct`): at 48 kHz everything from 4 to 24 kHz
came from a guess, and a voice's hiss rarely follows its spectrum below closely
enough. This small network looks instead: it sees the mixture's own spectrum
from 3.75 to 8 kHz (sibilants, breath and the upper harmonics, which it can
hear start and stop) next to each separated voice's spectrum below 3.75 kHz,
over about a second of context, and outputs each voice's share of every cell of
that octave. The shares add up to one, so the voices still add up to the
mixture there; above 8 kHz the reconstruction extends the shares as before, but
now from an 8 kHz band instead of a 4 kHz one.

Why shares of the mixture, not a waveform: the octave is mostly noise-like
(fricatives), where a magnitude mask loses little, and the mask keeps whatever
the recording has (room, microphone) instead of inventing it.

The network is permutation-consistent by construction: it scores each voice
against the others (``score(voice, sum of the others)``) with one set of
weights, and a softmax over the voices makes the shares, so swapping the
voices swaps the shares exactly.

Training is ``scripts/train_high_band.py``'s job; running it on windows is
:class:`podsep.models.embedded.separator.EmbeddedSeparator`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

RATE = 16000  # the network's rate: one octave above the separator's 8 kHz
N_FFT = 512  # 32 ms frames
HOP = 128  # 8 ms
SPLIT_HZ = 3750.0  # below: the separator's voices are kept as they are; from here up: shares of the mixture
SPLIT_BIN = int(round(SPLIT_HZ * N_FFT / RATE))  # 120
HIGH_BINS = N_FFT // 2 + 1 - SPLIT_BIN  # 137
LEVEL_FLOOR = 1e-6  # powers below this fraction of the window's mean are silence (finite logs)


@dataclass(frozen=True)
class HighBandConfig:
    """Shape of the network (all that is needed to rebuild it around a state dict)."""

    channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 2, 8)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["dilations"] = list(self.dilations)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "HighBandConfig":
        return cls(channels=int(values.get("channels", cls.channels)),
                   dilations=tuple(int(d) for d in values.get("dilations", cls.dilations)))


class _Block(nn.Module):
    """A residual dilated convolution over frames (non-causal: the window is known whole)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.norm = nn.GroupNorm(1, channels)
        self.act = nn.PReLU(channels)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.act(self.norm(self.conv(x))))


class HighBandNet(nn.Module):
    """Scores of one voice for every cell of the top octave, given its low band and the others'."""

    def __init__(self, config: HighBandConfig | None = None) -> None:
        super().__init__()
        self.config = config or HighBandConfig()
        channels = self.config.channels
        inputs = HIGH_BINS + 2 * SPLIT_BIN  # mixture above the split, this voice and the others below it
        self.inp = nn.Conv1d(inputs, channels, 1)
        self.blocks = nn.Sequential(*[_Block(channels, d) for d in self.config.dilations])
        self.out = nn.Conv1d(channels, HIGH_BINS, 1)

    def forward(self, mixture_high: torch.Tensor, voice_low: torch.Tensor, others_low: torch.Tensor) -> torch.Tensor:
        """Log-power features ``(batch, bins, frames)`` -> scores ``(batch, HIGH_BINS, frames)``."""
        x = torch.cat([mixture_high, voice_low, others_low], dim=1)
        return self.out(self.blocks(self.inp(x)))

    def shares(self, mixture: torch.Tensor, voices: torch.Tensor) -> torch.Tensor:
        """Each voice's share of the mixture's top-octave cells.

        ``mixture``: complex STFT ``(batch, bins, frames)``; ``voices``: complex
        STFTs ``(batch, k, bins, frames)`` of the separated voices. Returns
        ``(batch, k, HIGH_BINS, frames)`` shares that sum to one over ``k``.
        """
        batch, k = voices.shape[:2]
        mixture_power = mixture.abs() ** 2
        reference = mixture_power.mean(dim=(1, 2), keepdim=True) + 1e-12  # level independence
        high = torch.log10(mixture_power[:, SPLIT_BIN:] / reference + LEVEL_FLOOR)
        low = voices[:, :, :SPLIT_BIN].abs() ** 2 / reference[:, None]  # (batch, k, low bins, frames)
        others = low.sum(dim=1, keepdim=True) - low
        voice_features = torch.log10(low + LEVEL_FLOOR).flatten(0, 1)
        other_features = torch.log10(others.clamp_min(0.0) + LEVEL_FLOOR).flatten(0, 1)
        scores = self.forward(high.repeat_interleave(k, dim=0), voice_features, other_features)
        return torch.softmax(scores.view(batch, k, HIGH_BINS, -1), dim=1)


def stft(signal: torch.Tensor) -> torch.Tensor:
    """``(..., n)`` -> complex ``(..., bins, frames)`` with the network's frames."""
    shape = signal.shape
    flat = signal.reshape(-1, shape[-1])
    spectrum = torch.stft(flat, N_FFT, HOP, window=torch.hann_window(N_FFT, device=signal.device),
                          return_complex=True, center=True)
    return spectrum.reshape(shape[:-1] + spectrum.shape[-2:])


def istft(spectrum: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`."""
    shape = spectrum.shape
    flat = spectrum.reshape((-1,) + shape[-2:])
    signal = torch.istft(flat, N_FFT, HOP, window=torch.hann_window(N_FFT, device=spectrum.device),
                         length=length, center=True)
    return signal.reshape(shape[:-2] + (length,))


def complete(net: HighBandNet, mixture: torch.Tensor, voices: torch.Tensor) -> torch.Tensor:
    """16 kHz voices: the separated ones below SPLIT_HZ, their shares of the mixture above.

    ``mixture``: ``(batch, n)`` at 16 kHz; ``voices``: ``(batch, k, n)``, the
    separator's outputs brought to 16 kHz (empty above 4 kHz). Returns ``(batch,
    k, n)``.
    """
    n = mixture.shape[-1]
    mixture_spectrum = stft(mixture)
    voice_spectra = stft(voices)
    shares = net.shares(mixture_spectrum, voice_spectra)
    combined = voice_spectra.clone()
    combined[:, :, SPLIT_BIN:] = shares * mixture_spectrum[:, None, SPLIT_BIN:]
    return istft(combined, n)


def top_octave_loss(net: HighBandNet, mix: torch.Tensor, refs: torch.Tensor, ests: torch.Tensor) -> torch.Tensor:
    """Mean over voices of the negative SNR (dB) of their top-octave STFT cells.

    ``mix``: ``(batch, n)`` at 16 kHz; ``refs``: the true voices ``(batch, k, n)``;
    ``ests``: the separator's voices brought to 16 kHz, in the references' order.
    The floor (a thousandth of the mixture's octave) keeps a voice that is silent
    up there from dominating the mean. Training (``scripts/train_high_band.py``)
    and the episode's adaptation (:mod:`podsep.adapt_top_octave`) minimise it.
    """
    mixture = stft(mix)
    shares = net.shares(mixture, stft(ests))
    estimate = shares * mixture[:, None, SPLIT_BIN:]
    target = stft(refs)[:, :, SPLIT_BIN:]
    error = (estimate - target).abs().pow(2).sum(dim=(2, 3))
    energy = target.abs().pow(2).sum(dim=(2, 3))
    floor = 1e-3 * mixture[:, SPLIT_BIN:].abs().pow(2).sum(dim=(1, 2))[:, None] + 1e-10
    return (10 * torch.log10((error + floor) / (energy + floor))).mean()
