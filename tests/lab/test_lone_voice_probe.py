"""``scripts/probe_lone_voice_cue.py``: its ROC area, the figure the probe's verdict rests on."""

from __future__ import annotations

import numpy as np
import pytest

from script_loader import load_script


def test_auc_is_the_chance_a_positive_frame_outscores_a_negative_one() -> None:
    probe = load_script("probe_lone_voice_cue")
    positive = np.array([True, True, False, False])
    assert probe.auc(np.array([3.0, 4.0, 1.0, 2.0]), positive) == 1.0
    assert probe.auc(np.array([1.0, 2.0, 3.0, 4.0]), positive) == 0.0
    assert probe.auc(np.array([1.0, 1.0, 1.0, 1.0]), positive) == pytest.approx(0.5)  # ties count half
    assert probe.auc(np.array([1.0, 3.0, 2.0, 0.0]), positive) == pytest.approx(0.75)


def test_a_stream_keeps_its_length_and_its_pauses() -> None:
    probe = load_script("probe_lone_voice_cue")
    rng = np.random.default_rng(0)
    voice = probe.stream([np.ones(4000, np.float32)], 3.0, rng)
    assert voice.size == 3 * probe.RATE
    assert 0 < np.mean(voice == 0) < 0.5  # pauses between utterances, speech most of the time
