"""The embedded diarizer's one-voice test, on constructed embeddings (no audio, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from podsep.models.embedded.clustering import ClusteringSettings, looks_like_one_speaker, population_mean


def _voice(rng: np.random.Generator) -> np.ndarray:
    direction = rng.standard_normal(256)
    return direction / np.linalg.norm(direction)


def _windows(rng: np.random.Generator, voice: np.ndarray, count: int, spread: float) -> np.ndarray:
    """Raw window embeddings of one voice: the population mean plus the voice's offset plus noise."""
    mean = population_mean()
    noise = rng.standard_normal((count, 256)) * spread / np.sqrt(256)
    raw = mean + 0.5 * np.linalg.norm(mean) * voice + noise
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_population_mean_is_shipped():
    mean = population_mean()
    assert mean.shape == (256,) and np.all(np.isfinite(mean)) and 0.3 < np.linalg.norm(mean) <= 1.0


def test_one_voice_is_recognised():
    rng = np.random.default_rng(0)
    assert looks_like_one_speaker(_windows(rng, _voice(rng), 40, spread=0.2), ClusteringSettings())


@pytest.mark.parametrize("minority", [0.5, 0.2])
def test_two_voices_are_not_taken_for_one(minority):
    rng = np.random.default_rng(1)
    a, b = _voice(rng), _voice(rng)
    count_b = int(60 * minority)
    windows = np.concatenate([_windows(rng, a, 60 - count_b, 0.2), _windows(rng, b, count_b, 0.2)])
    assert not looks_like_one_speaker(windows, ClusteringSettings())


def test_scattered_windows_are_not_one_voice():
    # One cluster but no shared direction (the concentration condition).
    rng = np.random.default_rng(2)
    windows = np.stack([_windows(rng, _voice(rng), 1, 0.2)[0] for _ in range(40)])
    assert not looks_like_one_speaker(windows, ClusteringSettings())


def test_no_windows_is_not_one_voice():
    assert not looks_like_one_speaker(np.zeros((0, 256)), ClusteringSettings())
