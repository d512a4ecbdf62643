"""The top-octave network adapted to an episode's voices (podsep.adapt_top_octave), on real speech.

Random small networks in the shipped export formats (``podsep.lab.fixture_models``),
so the test checks the machinery (determinism, the never-worse rule, what the
adapted separator does with its new network, the pipeline's stage and manifest),
not the quality, which ``scripts/score_fullband.py --adapt`` measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import podsep
import podsep.adapt_top_octave as top_octave
from podsep import adapt
from podsep.audio import resample
from podsep.lab.fixture_models import build_embedded_separator, build_high_band
from podsep.lab.synth import ConversationSpec, generate_conversation
from podsep.models.embedded.high_band import SPLIT_HZ
from podsep.models.embedded.separator import EmbeddedSeparator


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("top-octave")
    return build_embedded_separator(folder / "separator.pt"), build_high_band(folder / "high_band.pt")


@pytest.fixture(scope="module")
def solo(training_voices) -> dict[str, np.ndarray]:
    """About 10 s of each of two training-set voices at 16 kHz."""
    return training_voices(16000, 10)


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few mixtures and steps: the machinery, in seconds."""
    monkeypatch.setattr(top_octave, "TRAINING_MIXTURES", 8)
    monkeypatch.setattr(top_octave, "VALIDATION_MIXTURES", 4)
    monkeypatch.setattr(top_octave, "BATCH", 2)
    monkeypatch.setattr(top_octave, "LEARNING_RATE", 1e-3)  # a random network must move in a few steps


def _separator(weights: tuple[Path, Path]) -> EmbeddedSeparator:
    return EmbeddedSeparator(weights[0], high_band=weights[1]).load()


def _net_bytes(net: torch.nn.Module) -> bytes:
    return b"".join(v.numpy().tobytes() for _, v in sorted(net.state_dict().items()))


def _always_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(top_octave, "keeps_adapted", lambda before, after: True)


def test_the_same_episode_gives_the_same_network_with_one_or_two_workers_and_the_incoming_one_is_untouched(
        weights, solo, small, monkeypatch) -> None:
    _always_keep(monkeypatch)
    incoming = _separator(weights)
    before = _net_bytes(incoming.top_octave_network)
    first = top_octave.adapt_top_octave(incoming, solo, [("A", "B")], seed=4, steps=3)
    second = top_octave.adapt_top_octave(_separator(weights), solo, [("A", "B")], seed=4, steps=3, workers=2)
    other = top_octave.adapt_top_octave(_separator(weights), solo, [("A", "B")], seed=5, steps=3)
    assert first.used and first.steps == 3
    assert first.sha256 == second.sha256 != other.sha256
    assert _net_bytes(first.separator.top_octave_network) == _net_bytes(second.separator.top_octave_network)
    assert _net_bytes(first.separator.top_octave_network) != before
    assert _net_bytes(incoming.top_octave_network) == before  # the generic separator keeps its network
    described = first.separator.describe()["high_band"]
    assert described["adapted_to_episode"] is True and described["sha256"] == first.sha256
    assert "adapted_to_episode" not in incoming.describe()["high_band"]
    entry = first.to_manifest()
    assert entry["used"] and set(entry["validation_top_octave_snr_db"]) == {"incoming", "adapted", "fine_tuned"}
    assert entry["move_fraction"] == top_octave.MOVE_FRACTION


def test_the_network_kept_lies_the_move_fraction_of_the_way_to_the_fine_tuned_one_and_is_the_one_checked(
        weights, solo, small, monkeypatch) -> None:
    _always_keep(monkeypatch)
    whole = top_octave.adapt_top_octave(_separator(weights), solo, [("A", "B")], seed=4, steps=3)
    monkeypatch.setattr(top_octave, "MOVE_FRACTION", 0.5)
    incoming = _separator(weights)
    half = top_octave.adapt_top_octave(incoming, solo, [("A", "B")], seed=4, steps=3)
    start = incoming.top_octave_network.state_dict()
    tuned = whole.separator.top_octave_network.state_dict()
    kept = half.separator.top_octave_network.state_dict()
    moved = [name for name in kept if kept[name].is_floating_point() and not torch.equal(start[name], tuned[name])]
    assert moved
    for name in moved:
        torch.testing.assert_close(kept[name], 0.5 * (start[name] + tuned[name]), rtol=1e-5, atol=1e-7)
    # The half-way network is what the check scored: the fine-tuned one's score is reported beside it.
    assert half.fine_tuned_db == pytest.approx(whole.validation_after_db, abs=1e-6)
    assert half.validation_after_db != pytest.approx(half.fine_tuned_db, abs=1e-6)
    assert half.sha256 != whole.sha256 and half.to_manifest()["move_fraction"] == 0.5


def test_the_adapted_network_changes_only_the_top_octave_and_the_voices_still_add_up(weights, solo, small,
                                                                                    monkeypatch) -> None:
    _always_keep(monkeypatch)
    incoming = _separator(weights)
    adapted = top_octave.adapt_top_octave(incoming, solo, [("A", "B")], seed=4, steps=3).separator
    rate = 16000
    window = (solo["A"][:2 * rate] + solo["B"][:2 * rate]).astype(np.float32)
    old, new = incoming(window, rate), adapted(window, rate)
    freqs = np.fft.rfftfreq(window.size, 1 / rate)
    old_spectrum, new_spectrum = np.fft.rfft(old, axis=-1), np.fft.rfft(new, axis=-1)
    below = freqs < 0.8 * SPLIT_HZ
    above = (freqs > 1.1 * SPLIT_HZ) & (freqs < 7600)
    low_change = np.abs(new_spectrum[:, below] - old_spectrum[:, below]).sum()
    assert low_change < 1e-3 * np.abs(old_spectrum[:, below]).sum()  # the separator's own band is the same
    assert np.abs(new_spectrum[:, above] - old_spectrum[:, above]).sum() > 1e-3 * np.abs(old_spectrum[:, above]).sum()
    # The shares still add up to the mixture up there, as the incoming network's do (both within the
    # couple of per cent an STFT whose octave was replaced loses when it is resynthesised).
    mixture = np.fft.rfft(window)
    scale = np.abs(mixture[above]).sum()
    missing = {name: np.abs(spectrum[:, above].sum(axis=0) - mixture[above]).sum() / scale
               for name, spectrum in (("incoming", old_spectrum), ("adapted", new_spectrum))}
    assert missing["adapted"] < 0.05 and missing["adapted"] < 1.5 * missing["incoming"], missing


def test_a_network_that_does_not_win_on_held_out_speech_is_not_kept(weights, solo, small, monkeypatch) -> None:
    monkeypatch.setattr(top_octave, "keeps_adapted", lambda before, after: False)
    incoming = _separator(weights)
    result = top_octave.adapt_top_octave(incoming, solo, [("A", "B")], seed=4, steps=2)
    assert not result.used and result.separator is incoming and "kept the incoming one" in result.reason
    assert result.validation_before_db is not None and result.validation_after_db is not None


def test_too_little_solo_speech_or_no_network_refuses_with_a_reason(weights, solo, small) -> None:
    short = {"A": solo["A"], "B": solo["B"][: 2 * 16000]}
    result = top_octave.adapt_top_octave(_separator(weights), short, [("A", "B")], seed=1, steps=2)
    assert not result.used and "too little solo speech for B" in result.reason
    plain = EmbeddedSeparator(weights[0], high_band=False).load()
    result = top_octave.adapt_top_octave(plain, solo, [("A", "B")], seed=1, steps=2)
    assert not result.used and result.separator is plain and "no top-octave network" in result.reason


def _episode(shared_dir: Path, rate: int):
    conversation = generate_conversation(shared_dir / "data" / "librispeech" / "test-other",
                                         ConversationSpec(num_speakers=2, duration=60.0, overlap_ratio=0.15), 21)
    if rate == conversation.sample_rate:
        return conversation.mixture, conversation
    return resample(conversation.mixture, conversation.sample_rate, rate), conversation


@pytest.mark.parametrize("rate, setting, expected", [(16000, True, True), (16000, False, False),
                                                     (8000, True, False)])
def test_the_pipeline_adapts_the_top_octave_where_the_network_is_used(weights, shared_dir, small, monkeypatch,
                                                                      rate, setting, expected) -> None:
    monkeypatch.setattr(top_octave, "STEPS", 2)
    monkeypatch.setattr("podsep.threads.free_cores", lambda *args, **kwargs: 1)
    mixture, conversation = _episode(shared_dir, rate)
    result = podsep.split(mixture, sample_rate=rate, diarization=conversation.diarization,
                          separator=EmbeddedSeparator(weights[0], high_band=weights[1]), overrides={
                              "diarization.cache": False, "separation.adapt": "on",
                              "separation.adapt_budget": adapt.FIXED_COST_S + 2 * adapt.SECONDS_PER_STEP,
                              "separation.adapt_top_octave": setting})
    entry = result.manifest["adaptation"]
    assert entry["steps"] == 2
    if expected:
        assert entry["top_octave"]["steps"] == 2 and entry["top_octave"]["reason"]
        assert entry["top_octave"]["validation_top_octave_snr_db"]["incoming"] is not None
        sha = result.manifest["models"]["separation"]["high_band"]["sha256"]
        assert (sha == entry["top_octave"]["weights_sha256"]) == entry["top_octave"]["used"]
    else:
        assert "top_octave" not in entry


def test_a_voice_profile_keeps_the_learnt_top_octave_for_the_next_episode(weights, shared_dir, small, monkeypatch,
                                                                           tmp_path) -> None:
    import json

    monkeypatch.setattr(top_octave, "STEPS", 2)
    _always_keep(monkeypatch)
    monkeypatch.setattr("podsep.threads.free_cores", lambda *args, **kwargs: 1)
    mixture, conversation = _episode(shared_dir, 16000)
    show = tmp_path / "show"
    settings = {"diarization.cache": False, "separation.voices": str(show)}

    def split(separator: EmbeddedSeparator, **overrides) -> dict:
        return podsep.split(mixture, sample_rate=16000, diarization=conversation.diarization, separator=separator,
                            overrides={**settings, **overrides}).manifest

    first = split(_separator(weights), **{"separation.adapt": "on", "separation.adapt_top_octave": True,
                                          "separation.adapt_budget": adapt.FIXED_COST_S + 2 * adapt.SECONDS_PER_STEP})
    learnt = first["adaptation"]["top_octave"]
    assert learnt["used"] and first["voices"]["top_octave_saved"]
    saved = json.loads((show / "profile.json").read_text())
    assert saved["top_octave"] == "top_octave.pt" and saved["top_octave_sha256"] == first["voices"]["top_octave_sha256"]
    payload = torch.load(show / "top_octave.pt", weights_only=True)
    assert adapt.state_digest(payload["state_dict"]) == learnt["weights_sha256"]  # the network the episode used

    # The next episode, not adapting, shares the top octave with the saved network, not the generic one.
    second = split(_separator(weights), **{"separation.adapt": "off"})
    used = second["models"]["separation"]["high_band"]
    assert used["sha256"] == saved["top_octave_sha256"] and used["source"] == str(show / "top_octave.pt")
    assert not second["voices"]["top_octave_saved"]
    # Without a top-octave network in the run (separation.high_band: off), the profile adds none.
    third = split(EmbeddedSeparator(weights[0], high_band=False), **{"separation.adapt": "off"})
    assert "high_band" not in third["models"]["separation"]
    assert json.loads((show / "profile.json").read_text())["top_octave_sha256"] == saved["top_octave_sha256"]
