"""The top-octave network: shares that add up, follow the voices' order, and keep the separated low band."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from podsep.errors import ModelError
from podsep.lab.fixture_models import build_embedded_separator, build_high_band
from podsep.models.embedded.high_band import (
    HIGH_BINS,
    SPLIT_BIN,
    HighBandConfig,
    HighBandNet,
    complete,
    istft,
    stft,
)
from podsep.models.embedded.separator import EmbeddedSeparator
from podsep.separate import rendering_bands, separator_band


def _net(seed: int = 0) -> HighBandNet:
    torch.manual_seed(seed)
    return HighBandNet(HighBandConfig(channels=16, dilations=(1, 2))).eval()


def _signals(seed: int, k: int = 2, n: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    voices = torch.randn(1, k, n, generator=generator)
    return voices.sum(dim=1) + 0.1 * torch.randn(1, n, generator=generator), voices


def test_the_shares_add_up_to_one_and_swap_with_the_voices():
    net = _net()
    mixture, voices = _signals(1)
    with torch.no_grad():
        shares = net.shares(stft(mixture), stft(voices))
        swapped = net.shares(stft(mixture), stft(voices.flip(1)))
    assert shares.shape[1:3] == (2, HIGH_BINS)
    assert torch.allclose(shares.sum(dim=1), torch.ones(()), atol=1e-6)
    assert torch.allclose(swapped, shares.flip(1), atol=1e-6)
    assert float((shares - 0.5).abs().max()) > 1e-3  # the scores do depend on the voices


def test_three_voices_also_share_every_cell():
    net = _net()
    mixture, voices = _signals(2, k=3)
    with torch.no_grad():
        shares = net.shares(stft(mixture), stft(voices))
    assert torch.allclose(shares.sum(dim=1), torch.ones(()), atol=1e-6)


def test_completed_voices_keep_their_low_band_and_add_up_to_the_mixture_above_it():
    net = _net()
    mixture, voices = _signals(3)
    n = mixture.shape[-1]
    with torch.no_grad():
        completed = complete(net, mixture, voices)
        low_voices = stft(voices)
        low_voices[..., SPLIT_BIN:, :] = 0
        expected_sum = low_voices.sum(dim=1)
        expected_sum[..., SPLIT_BIN:, :] = stft(mixture)[..., SPLIT_BIN:, :]
        assert torch.allclose(completed.sum(dim=1), istft(expected_sum, n), atol=1e-4)
        # a mixture with nothing above the split (tones under 2 kHz): each voice is its own low band
        t = torch.arange(n) / 16000
        dull = sum(torch.sin(2 * torch.pi * f * t + f) for f in (220.0, 700.0, 1900.0)) * torch.hann_window(n)[None]
        assert torch.allclose(complete(net, dull, voices), istft(low_voices, n), atol=2e-3)  # voices reach 3


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("high-band")
    return build_embedded_separator(folder / "separator.pt"), build_high_band(folder / "high_band.pt")


def test_the_embedded_separator_fills_8_khz_with_the_network_and_says_so(weights):
    separator_weights, high_band = weights
    separator = EmbeddedSeparator(separator_weights, high_band=high_band).load()
    plain = EmbeddedSeparator(separator_weights, high_band=False).load()
    rate = 48000
    rng = np.random.default_rng(0)
    window = rng.standard_normal(rate).astype(np.float32)
    sources = separator(window, rate)
    spectrum = np.abs(np.fft.rfft(sources, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(window.size, 1 / rate)
    octave = (freqs > 4500) & (freqs < 7500)
    plain_spectrum = np.abs(np.fft.rfft(plain(window, rate), axis=-1)) ** 2
    assert spectrum[:, octave].sum() > 1e-2 * spectrum.sum()  # white noise in: the octave is filled
    assert plain_spectrum[:, octave].sum() < 1e-4 * plain_spectrum.sum()  # the plain model's outputs stop at 4 kHz
    assert separator_band(separator, rate) == 8000.0
    assert separator_band(plain, rate) == 4000.0
    assert separator_band(separator, 16000) is None  # full band at 16 kHz
    described = separator.describe()["high_band"]
    assert described["band_hz"] == 8000.0 and len(described["sha256"]) == 64
    # at the model's own rate there is no top octave to fill
    low = rng.standard_normal(8000).astype(np.float32)
    assert np.array_equal(separator(low, 8000), plain(low, 8000))


def test_above_the_networks_band_overlaps_are_also_rendered_from_the_models_own_band(weights):
    separator_weights, high_band = weights
    separator = EmbeddedSeparator(separator_weights, high_band=high_band).load()
    plain = EmbeddedSeparator(separator_weights, high_band=False).load()
    assert rendering_bands(separator, 48000) == [8000.0, 4000.0]  # the network's rendering and the 4 kHz one
    assert rendering_bands(separator, 44100) == [8000.0, 4000.0]
    assert rendering_bands(separator, 16000) == [None]  # the network reaches Nyquist: its rendering alone
    assert rendering_bands(plain, 48000) == [4000.0]

    class Wideband:  # any other separator: one rendering from its band
        sample_rate = 16000

    assert rendering_bands(Wideband(), 48000) == [8000.0]
    assert rendering_bands(Wideband(), 16000) == [None]


def test_an_unreadable_top_octave_file_is_a_one_line_model_error(weights, tmp_path):
    separator_weights, _ = weights
    broken = tmp_path / "high_band.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(ModelError) as caught:
        EmbeddedSeparator(separator_weights, high_band=broken).load()
    assert "top-octave" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ModelError):
        EmbeddedSeparator(separator_weights, high_band=tmp_path / "missing.pt").load()
