"""Unit tests of adaptation's pure parts: budget and steps, the plan, solo speech collection, voice profiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from podsep import adapt
from podsep.errors import ModelError
from podsep.intervals import SpeakerActivity
from podsep.voices import MATCH_THRESHOLD, load_profile, match_voices, save_profile, unit

# -- budget and steps ---------------------------------------------------------------------------


def test_budget_is_its_minimum_or_a_tenth_of_the_recording_and_capped() -> None:
    assert adapt.adaptation_budget(90.0) == adapt.MIN_BUDGET_S == 115.0
    assert adapt.adaptation_budget(600.0) == 115.0
    assert adapt.adaptation_budget(1200.0) == pytest.approx(120.0)
    assert adapt.adaptation_budget(3600.0) == pytest.approx(360.0)
    assert adapt.adaptation_budget(3600.0, cap_s=120.0) == 120.0
    assert adapt.adaptation_budget(90.0, cap_s=0.0) == 0.0


def test_steps_are_the_budget_over_the_fixed_step_cost() -> None:
    assert adapt.steps_for_budget(60.0, 0.5, fixed_cost_s=0.0) == 120
    assert adapt.steps_for_budget(60.0, 0.7, fixed_cost_s=0.0) == 85
    assert adapt.steps_for_budget(60.0, 0.5, fixed_cost_s=5.0) == 110
    assert adapt.steps_for_budget(0.0) == 0 and adapt.steps_for_budget(2.0, fixed_cost_s=5.0) == 0
    assert adapt.steps_for_budget(adapt.SECONDS_PER_STEP * 10 + adapt.FIXED_COST_S) == 10  # no rounding down
    assert adapt.SECONDS_PER_STEP == adapt.STEP_CORE_SECONDS / adapt.BUDGET_CORES
    # the default budget buys the 100 steps every measured row trained (README, Learning the voices)
    assert adapt.steps_for_budget(adapt.adaptation_budget(600.0)) == 100
    with pytest.raises(ValueError):
        adapt.steps_for_budget(10.0, 0.0)


def test_plan_turns_the_budget_into_steps_before_training() -> None:
    solo = {"A": np.zeros(8000 * 40, np.float32), "B": np.zeros(8000 * 30, np.float32)}
    plan = adapt.plan_adaptation(3600.0, solo, [("A", "B")], mode="auto")
    assert plan.enabled and plan.pairs == (("A", "B"),)
    assert plan.budget_s == pytest.approx(360.0)
    assert plan.steps == adapt.steps_for_budget(360.0)
    assert plan.solo_seconds == {"A": 40.0, "B": 30.0}
    capped = adapt.plan_adaptation(3600.0, solo, [("B", "A")], budget_cap_s=30.0)
    assert capped.steps == adapt.steps_for_budget(30.0) and capped.pairs == (("A", "B"),)
    explicit = adapt.plan_adaptation(90.0, solo, [("A", "B")], budget_s=adapt.FIXED_COST_S + 10.0,
                                     seconds_per_step=2.0)
    assert explicit.steps == 5
    json.dumps(plan.to_manifest())


def test_plan_says_why_it_does_not_adapt() -> None:
    enough = {"A": 40.0, "B": 40.0}
    off = adapt.plan_adaptation(600.0, enough, [("A", "B")], mode="off")
    assert not off.enabled and "off" in off.reason and not off.warn
    none = adapt.plan_adaptation(600.0, enough, [], mode="on")
    assert not none.enabled and "no overlapped speech" in none.reason
    short = {"A": 40.0, "B": 3.0}
    auto = adapt.plan_adaptation(600.0, short, [("A", "B")], mode="auto")
    assert not auto.enabled and not auto.warn
    assert "too little solo speech" in auto.reason and "B 3.0 s" in auto.reason
    forced = adapt.plan_adaptation(600.0, short, [("A", "B")], mode="on")
    assert not forced.enabled and forced.warn
    zero = adapt.plan_adaptation(600.0, enough, [("A", "B")], mode="on", budget_cap_s=adapt.FIXED_COST_S)
    assert not zero.enabled and "no training step" in zero.reason and zero.warn


def test_auto_leaves_a_recording_with_little_overlap_to_the_generic_model() -> None:
    enough = {"A": 40.0, "B": 40.0}
    little = adapt.plan_adaptation(30.0, enough, [("A", "B")], mode="auto", overlapped_s=0.4)
    assert not little.enabled and not little.warn and little.steps == 0
    assert "0.4 s of overlapped speech" in little.reason and "--adapt" in little.reason
    forced = adapt.plan_adaptation(30.0, enough, [("A", "B")], mode="on", overlapped_s=0.4)
    assert forced.enabled and forced.steps > 0
    at_threshold = adapt.plan_adaptation(30.0, enough, [("A", "B")], mode="auto", overlapped_s=adapt.MIN_OVERLAP_S)
    assert at_threshold.enabled


def test_plan_leaves_out_pairs_without_enough_speech() -> None:
    plan = adapt.plan_adaptation(600.0, {"A": 40.0, "B": 40.0, "C": 2.0}, [("A", "B", "C"), ("A", "B")])
    assert plan.enabled and plan.pairs == (("A", "B"),)
    assert "A-C" in plan.reason and "B-C" in plan.reason


@pytest.mark.parametrize("value,expected", [(True, "on"), (False, "off"), ("ON", "on"), ("auto", "auto"),
                                            ("no", "off"), (None, "off")])
def test_modes_accept_yaml_booleans(value, expected) -> None:
    assert adapt.normalise_mode(value) == expected


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        adapt.normalise_mode("sometimes")


def test_overlapping_pairs_are_distinct_and_sorted() -> None:
    assert adapt.overlapping_pairs([("B", "A"), ("A", "B"), ("A", "C", "B")]) == [("A", "B"), ("A", "C"), ("B", "C")]


# -- solo speech ----------------------------------------------------------------------------------


def test_solo_speech_keeps_a_margin_from_every_turn_boundary() -> None:
    rate = 1000
    n = 20 * rate
    ramp = np.arange(n, dtype=np.float32)
    activity = SpeakerActivity([(0.0, 10.0, "A"), (8.0, 20.0, "B"), (12.0, 12.3, "A")], ["A", "B"], rate, n)
    reads = []

    def read(start: int, stop: int) -> np.ndarray:
        reads.append((start, stop))
        return ramp[start:stop].copy()

    solo = adapt.collect_solo_speech(read, activity, margin_s=0.25, min_run_s=0.5, model_rate=rate)
    # A alone: [0, 8) -> [0.25, 7.75); B alone: [10, 12) and [12.3, 20) -> [10.25, 11.75) and [12.55, 19.75)
    assert sorted(reads) == [(250, 7750), (10250, 11750), (12550, 19750)]
    assert solo["A"].size == 7500 and solo["B"].size == 1500 + 7200
    inner = solo["A"][20:-20]
    assert inner.min() >= 250 and inner.max() < 7750
    capped = adapt.collect_solo_speech(read, activity, max_seconds_per_speaker=2.0, model_rate=rate)
    assert capped["A"].size == 2000 and capped["B"].size == 2000


def test_solo_speech_is_resampled_to_the_model_rate() -> None:
    rate = 16000
    n = 10 * rate
    activity = SpeakerActivity([(0.0, 10.0, "A")], ["A"], rate, n)
    audio = np.sin(np.arange(n) * 0.05).astype(np.float32)
    solo = adapt.collect_solo_speech(lambda a, b: audio[a:b], activity, margin_s=0.5)
    assert solo["A"].dtype == np.float32 and solo["A"].size == 9 * 8000


def test_a_speaker_who_never_talks_alone_gets_nothing() -> None:
    rate = 100
    activity = SpeakerActivity([(0.0, 10.0, "A"), (2.0, 3.0, "B")], ["A", "B"], rate, 1000)
    solo = adapt.collect_solo_speech(lambda a, b: np.ones(b - a, np.float32), activity, model_rate=rate)
    assert solo["B"].size == 0 and solo["A"].size > 0


@pytest.mark.parametrize("holdout", adapt.HOLDOUTS)
def test_validation_holds_out_a_fifth_of_the_speech_and_leaves_the_input_alone(holdout) -> None:
    rate = 8000
    audio = np.arange(1, 10 * rate + 1, dtype=np.float32)  # 10 s, every sample distinct
    original = audio.copy()
    train, valid = adapt.hold_out(audio, rate, holdout)
    assert np.array_equal(audio, original)  # the caller's speech is not faded in place
    assert train.size + valid.size == audio.size and valid.size == 2 * rate
    if holdout == "end":
        assert np.array_equal(valid, audio[8 * rate:]) and np.array_equal(train, audio[:8 * rate])
    else:  # seconds 4 and 9 validate; the joins are faded, the middles untouched
        assert np.array_equal(valid[100:rate - 100], audio[4 * rate + 100:5 * rate - 100])
        assert np.array_equal(valid[rate + 100:-100], audio[9 * rate + 100:10 * rate - 100])
        assert valid[0] == 0.0 and train[4 * rate] == 0.0
        assert np.array_equal(train[4 * rate + 100:5 * rate - 100], audio[5 * rate + 100:6 * rate - 100])
    with pytest.raises(ValueError, match="holdout"):
        adapt.adapt_separator(object(), {}, [], 1, holdout="middle")


# -- mixtures -------------------------------------------------------------------------------------


def test_mixtures_are_the_sum_of_their_targets_and_seeded() -> None:
    rng_audio = np.random.default_rng(0)
    audio = {"A": rng_audio.standard_normal(40000).astype(np.float32),
             "B": 0.1 * rng_audio.standard_normal(40000).astype(np.float32)}
    for seed in range(20):
        mix, targets = adapt.make_mixture(np.random.default_rng(seed), audio, ("A", "B"), 16000, 8000)
        again, _ = adapt.make_mixture(np.random.default_rng(seed), audio, ("A", "B"), 16000, 8000)
        assert np.array_equal(mix, again)
        assert targets.shape == (2, 16000) and np.allclose(mix, targets.sum(axis=0), atol=1e-6)
        assert np.all(np.abs(targets).sum(axis=1) > 0)


def test_mixtures_follow_the_episode_level_difference() -> None:
    rng = np.random.default_rng(1)
    audio = {"A": rng.standard_normal(40000).astype(np.float32), "B": rng.standard_normal(40000).astype(np.float32)}
    shapes = adapt.MixtureShapes(None, {("B", "A"): 10.0})  # A is 10 dB above B
    ratios = []
    for seed in range(40):
        _, targets = adapt.make_mixture(np.random.default_rng(seed), audio, ("A", "B"), 16000, 8000, shapes)
        ratios.append(targets)
    # whichever came first, the louder voice is about 10 dB (+-3) above the other where both speak
    for targets in ratios:
        both = np.all(np.abs(targets) > 0, axis=0)
        if both.sum() > 4000:
            levels = [10 * np.log10(np.mean(t[both] ** 2)) for t in targets]
            assert 6.5 <= abs(levels[0] - levels[1]) <= 13.5


# -- voice profiles -------------------------------------------------------------------------------


def test_voices_match_one_to_one_above_the_threshold() -> None:
    rng = np.random.default_rng(3)
    alice, bob, guest = (unit(rng.standard_normal(256)) for _ in range(3))
    saved = {"Alice": alice, "Bob": bob}
    new = {"SPEAKER_00": unit(bob + 0.1 * rng.standard_normal(256) / 16), "SPEAKER_01": guest,
           "SPEAKER_02": unit(alice + 0.1 * rng.standard_normal(256) / 16)}
    match = match_voices(new, saved)
    assert match.names == {"SPEAKER_00": "Bob", "SPEAKER_02": "Alice"}
    assert match.scores["SPEAKER_01"]["Alice"] < MATCH_THRESHOLD
    twins = match_voices({"x": alice, "y": alice}, saved)
    assert list(twins.names.values()) == ["Alice"]  # one to one
    json.dumps(match.to_manifest())
    with pytest.raises(ModelError):
        match_voices({"x": np.ones(3)}, saved)


def test_profile_without_weights_round_trips_and_merges(tmp_path) -> None:
    assert load_profile(tmp_path / "none") is None
    rng = np.random.default_rng(4)
    first = {"Alice": rng.standard_normal(256), "Zoë / Bob": rng.standard_normal(256)}
    saved = save_profile(tmp_path / "show", first, embedder="ge2e")
    loaded = load_profile(tmp_path / "show")
    assert loaded is not None and set(loaded.voices) == set(first)
    for name, vector in first.items():
        assert np.allclose(loaded.voices[name], unit(vector))
    assert loaded.episodes == {"Alice": 1, "Zoë / Bob": 1} and loaded.weights is None
    assert loaded.separator() is None and saved.embedder == "ge2e"
    second = save_profile(tmp_path / "show", {"Alice": rng.standard_normal(256), "Carol": rng.standard_normal(256)},
                          previous=loaded, embedder="ge2e")
    assert second.episodes == {"Alice": 2, "Zoë / Bob": 1, "Carol": 1}
    assert np.isclose(np.linalg.norm(load_profile(tmp_path / "show").voices["Alice"]), 1.0)
    with pytest.raises(ModelError):
        save_profile(tmp_path / "show", {}, previous=second, embedder="other")


def test_damaged_or_newer_profiles_are_refused(tmp_path) -> None:
    save_profile(tmp_path, {"A": np.ones(4)})
    meta = json.loads((tmp_path / "profile.json").read_text())
    meta["version"] = 99
    (tmp_path / "profile.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="version 99"):
        load_profile(tmp_path)
    (tmp_path / "profile.json").write_text("{not json")
    with pytest.raises(ModelError):
        load_profile(tmp_path)


def test_overlap_statistics_per_pair() -> None:
    from podsep.overlaps import OverlapRegion

    regions = [OverlapRegion(1.0, 1.5, ("B", "A")), OverlapRegion(3.0, 5.0, ("A", "B", "C"))]
    stats = adapt.overlap_statistics(regions)
    assert stats == {("A", "B"): [0.5, 2.0], ("A", "C"): [2.0], ("B", "C"): [2.0]}
