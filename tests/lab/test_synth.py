"""Every guarantee of podsep.lab.synth, on real LibriSpeech speech and measured RIRs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from podsep.diarization import Diarization
from podsep.errors import InputError, OutputError
from podsep.lab.synth import (
    FRAMES_PER_SECOND,
    Conversation,
    ConversationSpec,
    conversation_seed,
    generate_conversation,
    generate_set,
)

RIR_GLOB = "*_r*__0.wav"  # the 8 room impulse responses among meeting-sim's files

# (sample rate, speakers, reverb, noise): every rate, 2-4 speakers, dry and wet.
CASES = [
    (16000, 2, False, False),
    (16000, 3, True, True),
    (44100, 2, True, False),
    (44100, 4, False, True),
    (48000, 3, False, False),
    (48000, 4, True, True),
]


@pytest.fixture(scope="session")
def speech_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "librispeech" / "test-other"


@pytest.fixture(scope="session")
def meeting_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "meeting-sim"


def _make(speech_dir: Path, meeting_dir: Path, sample_rate: int, speakers: int, reverb: bool, noise: bool,
          seed: int = 7, **settings) -> Conversation:
    spec = ConversationSpec(num_speakers=speakers, sample_rate=sample_rate, reverb=reverb, rir_glob=RIR_GLOB,
                            noise_snr=20.0 if noise else None, **settings)
    return generate_conversation(speech_dir, spec, seed, rir_dir=meeting_dir,
                                 noise_path=meeting_dir / "000_noise__0.wav")


@pytest.fixture(scope="session")
def conversations(speech_dir: Path, meeting_dir: Path) -> dict[tuple, Conversation]:
    return {case: _make(speech_dir, meeting_dir, *case, duration=30.0) for case in CASES}


def _case_ids(case: tuple) -> str:
    rate, speakers, reverb, noise = case
    return f"{rate}Hz-{speakers}spk" + ("-reverb" if reverb else "") + ("-noise" if noise else "")


def _frame_activity(conversation: Conversation) -> np.ndarray:
    """(speakers, frames) activity on the 10 ms grid (exact, since boundaries are on it)."""
    frames = conversation.num_samples // (conversation.sample_rate // FRAMES_PER_SECOND)
    return conversation.diarization.activity(FRAMES_PER_SECOND, frames)


# -- grid and shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_boundaries_lie_on_the_10ms_grid(conversations: dict, case: tuple) -> None:
    conversation = conversations[case]
    rate = conversation.sample_rate
    assert rate == case[0]
    assert conversation.num_samples % (rate // FRAMES_PER_SECOND) == 0
    for turn in conversation.diarization.turns:
        for time_point in (turn.start, turn.end):
            assert abs(time_point * 100 - round(time_point * 100)) < 1e-9
            for any_rate in (16000, 44100, 48000):
                assert abs(time_point * any_rate - round(time_point * any_rate)) < 1e-6
    # RTTM's 3 decimals are exact: reading it back gives the same turns.
    back = Diarization.from_rttm(_write_text(conversation.diarization.to_rttm()))
    assert [(round(t.start * 1000), round(t.end * 1000), t.speaker) for t in back.turns] == \
        [(round(t.start * 1000), round(t.end * 1000), t.speaker) for t in conversation.diarization.turns]
    for turn_back, turn in zip(back.turns, conversation.diarization.turns):
        assert turn_back.start == pytest.approx(turn.start, abs=1e-9)
        assert turn_back.end == pytest.approx(turn.end, abs=1e-9)


def _write_text(text: str) -> Path:
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".rttm", delete=False)
    handle.write(text)
    handle.close()
    return Path(handle.name)


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_shapes_and_types(conversations: dict, case: tuple) -> None:
    conversation = conversations[case]
    assert conversation.mixture.dtype == np.float32 and conversation.mixture.ndim == 1
    assert list(conversation.references) == conversation.diarization.speakers
    assert len(conversation.references) == case[1]
    for track in conversation.references.values():
        assert track.dtype == np.float32 and track.shape == conversation.mixture.shape
    if case[3]:
        assert conversation.noise is not None and conversation.noise.shape == conversation.mixture.shape
    else:
        assert conversation.noise is None
    assert 0.8 * 30.0 <= conversation.num_samples / conversation.sample_rate <= 1.2 * 30.0


# -- references ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_references_are_exactly_zero_outside_their_turns(conversations: dict, case: tuple) -> None:
    conversation = conversations[case]
    activity = conversation.diarization.activity(conversation.sample_rate, conversation.num_samples)
    edge = conversation.sample_rate // 50  # 20 ms
    for row, speaker in enumerate(conversation.diarization.speakers):
        track = conversation.references[speaker]
        assert not np.any(track[~activity[row]]), f"{speaker} leaks outside its turns"
        # and the turns are tight: there is sound right at both ends of every turn
        for turn in conversation.diarization.turns:
            if turn.speaker != speaker:
                continue
            start, end = round(turn.start * conversation.sample_rate), round(turn.end * conversation.sample_rate)
            assert np.any(track[start: start + edge]) and np.any(track[end - edge: end])


def test_turns_are_exactly_the_placed_excerpts(speech_dir: Path, meeting_dir: Path) -> None:
    """Dry at 16 kHz, each turn is a gain times the source samples it names (5 ms fades aside)."""
    conversation = _make(speech_dir, meeting_dir, 16000, 3, False, False, seed=11, duration=30.0)
    placements = conversation.metadata["placements"]
    expected = sorted((p["start"], p["end"], p["speaker"]) for p in placements)
    actual = sorted((t.start, t.end, t.speaker) for t in conversation.diarization.turns)
    assert actual == expected
    fade = 80  # 5 ms
    for placement in placements:
        source, rate = sf.read(speech_dir / placement["source"], dtype="float64")
        assert rate == 16000
        original = source[round(placement["source_start"] * rate): round(placement["source_end"] * rate)]
        start, end = round(placement["start"] * rate), round(placement["end"] * rate)
        placed = conversation.references[placement["speaker"]][start:end].astype(np.float64)
        assert placed.shape == original.shape
        inner_original, inner_placed = original[fade:-fade], placed[fade:-fade]
        gain = np.dot(inner_placed, inner_original) / np.dot(inner_original, inner_original)
        residual = inner_placed - gain * inner_original
        assert np.max(np.abs(residual)) <= 1e-6 * max(1.0, np.max(np.abs(inner_placed)))
        assert placement["speaker"] == Path(placement["source"]).name.split("-")[0]


# -- mixture ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_mixture_is_the_sum_of_references_and_noise(conversations: dict, case: tuple) -> None:
    conversation = conversations[case]
    total = np.zeros_like(conversation.mixture)
    for speaker in conversation.diarization.speakers:
        total += conversation.references[speaker]
    if conversation.noise is not None:
        total += conversation.noise
    assert np.array_equal(total, conversation.mixture)  # bit-exact in the documented order
    in_float64 = sum(r.astype(np.float64) for r in conversation.references.values())
    if conversation.noise is not None:
        in_float64 = in_float64 + conversation.noise
    np.testing.assert_allclose(conversation.mixture, in_float64, atol=1e-6)
    limit = ConversationSpec().peak_limit
    assert np.max(np.abs(conversation.mixture)) <= limit + 1e-6
    for track in conversation.references.values():
        assert np.max(np.abs(track)) <= limit + 1e-6


def test_loud_conversations_are_scaled_down_as_a_whole(speech_dir: Path, meeting_dir: Path) -> None:
    conversation = _make(speech_dir, meeting_dir, 16000, 2, False, True, duration=20.0, speech_level_dbfs=-6.0)
    assert conversation.metadata["scale_db"] < 0
    loudest = max(np.max(np.abs(x)) for x in [conversation.mixture, *conversation.references.values()])
    assert loudest == pytest.approx(0.99, abs=1e-6)  # the loudest of mixture and tracks touches the limit
    total = np.zeros_like(conversation.mixture)
    for speaker in conversation.diarization.speakers:
        total += conversation.references[speaker]
    assert np.array_equal(total + conversation.noise, conversation.mixture)


def test_noise_is_at_the_requested_snr(conversations: dict) -> None:
    for case, conversation in conversations.items():
        if not case[3]:
            continue
        speech = sum(r.astype(np.float64) for r in conversation.references.values())
        active = conversation.diarization.activity(conversation.sample_rate, conversation.num_samples).any(axis=0)
        snr = 10 * np.log10(np.mean(speech[active] ** 2) / np.mean(conversation.noise.astype(np.float64) ** 2))
        assert snr == pytest.approx(20.0, abs=0.01)


def test_reverb_level_does_not_depend_on_the_sample_rate(speech_dir: Path, meeting_dir: Path) -> None:
    levels = []
    for rate in (16000, 44100, 48000):
        conversation = _make(speech_dir, meeting_dir, rate, 2, True, False, seed=5, duration=20.0)
        activity = conversation.diarization.activity(rate, conversation.num_samples)
        levels.append([10 * np.log10(np.mean(conversation.references[s][activity[i]].astype(np.float64) ** 2))
                       for i, s in enumerate(conversation.diarization.speakers)])
    np.testing.assert_allclose(levels[1], levels[0], atol=0.2)
    np.testing.assert_allclose(levels[2], levels[0], atol=0.2)


# -- reproducibility and speakers ---------------------------------------------------------------


def test_same_seed_same_output(speech_dir: Path, meeting_dir: Path) -> None:
    first = _make(speech_dir, meeting_dir, 44100, 3, True, True, seed=3, duration=20.0)
    second = _make(speech_dir, meeting_dir, 44100, 3, True, True, seed=3, duration=20.0)
    assert np.array_equal(first.mixture, second.mixture)
    assert first.diarization == second.diarization
    assert all(np.array_equal(first.references[s], second.references[s]) for s in first.references)
    assert np.array_equal(first.noise, second.noise)
    assert first.metadata == second.metadata
    other = _make(speech_dir, meeting_dir, 44100, 3, True, True, seed=4, duration=20.0)
    assert other.diarization != first.diarization


def test_layout_depends_only_on_seed_and_layout_settings(speech_dir: Path, meeting_dir: Path) -> None:
    dry = _make(speech_dir, meeting_dir, 16000, 3, False, False, seed=9, duration=20.0)
    wet = _make(speech_dir, meeting_dir, 48000, 3, True, True, seed=9, duration=20.0)
    assert dry.diarization.turns == wet.diarization.turns
    assert dry.num_samples * 3 == wet.num_samples


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_speakers_are_distinct_librispeech_speakers(conversations: dict, case: tuple) -> None:
    conversation = conversations[case]
    labels = conversation.diarization.speakers
    assert len(set(labels)) == len(labels) == case[1]
    for placement in conversation.metadata["placements"]:
        assert Path(placement["source"]).name.split("-")[0] == placement["speaker"]
        assert Path(placement["source"]).parent.name == placement["speaker"]  # test-other/<speaker>/


def test_one_utterance_per_speaker_folder_works(shared_dir: Path, meeting_dir: Path) -> None:
    """train-clean-100 has one short utterance per speaker: speech is reused, speakers still distinct."""
    folder = shared_dir / "data" / "librispeech" / "train-clean-100"
    conversation = _make(folder, meeting_dir, 16000, 4, False, False, seed=2, duration=40.0)
    assert len(set(conversation.diarization.speakers)) == 4
    assert abs(conversation.overlap_ratio() - 0.15) <= 0.05


# -- overlaps ------------------------------------------------------------------------------------


def _overlap_regions(count: np.ndarray) -> list[tuple[int, int]]:
    overlapped = np.concatenate([[False], count >= 2, [False]]).astype(int)
    changes = np.flatnonzero(np.diff(overlapped))
    return list(zip(changes[::2], changes[1::2]))


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_every_overlap_has_a_solo_speaker_around_it(conversations: dict, case: tuple) -> None:
    conversation = conversations[case]
    activity = _frame_activity(conversation)
    count = activity.sum(axis=0)
    assert count.max() <= 2, "never more than two people at once"
    min_solo = round(ConversationSpec().min_solo * FRAMES_PER_SECOND)
    regions = _overlap_regions(count)
    assert regions, "the conversation should have overlaps"
    for start, end in regions:
        overlapping = set(np.flatnonzero(activity[:, start]))
        assert start >= min_solo and end + min_solo <= count.shape[0]
        before, after = activity[:, start - min_solo: start], activity[:, end: end + min_solo]
        # exactly one speaker right before and right after, and it is one of the two who overlap:
        # the overlap started while that speaker was already talking.
        for window in (before, after):
            assert np.all(window.sum(axis=0) == 1)
            (solo_speaker,) = set(np.flatnonzero(window.any(axis=1)))
            assert solo_speaker in overlapping


def test_overlap_kinds_and_their_durations(speech_dir: Path, meeting_dir: Path) -> None:
    spec = ConversationSpec()
    seen = {"backchannel": 0, "interruption": 0, "crosstalk": 0, "turn": 0}
    for seed in range(4):
        conversation = _make(speech_dir, meeting_dir, 16000, 2, False, False, seed=seed)
        placements = sorted(conversation.metadata["placements"], key=lambda p: p["start"])
        floor = [p for p in placements if p["kind"] != "backchannel"]
        for previous, placement in zip(floor, floor[1:]):
            overlap = previous["end"] - placement["start"]
            if placement["kind"] == "interruption":
                assert spec.interruption_duration[0] - 1e-9 <= overlap <= spec.interruption_duration[1] + 1e-9
            elif placement["kind"] == "crosstalk":
                assert spec.crosstalk_duration[0] - 1e-9 <= overlap <= spec.crosstalk_duration[1] + 1e-9
            else:
                assert overlap < 0  # a pause between turns
        for placement in placements:
            seen[placement["kind"]] += 1
            if placement["kind"] == "backchannel":
                length = placement["end"] - placement["start"]
                assert spec.backchannel_duration[0] - 1e-9 <= length <= spec.backchannel_duration[1] + 1e-9
    assert all(seen.values()), seen


@pytest.mark.parametrize("target", [0.05, 0.15, 0.3])
@pytest.mark.parametrize("speakers", [2, 3, 4])
def test_overlap_ratio_is_near_the_target(speech_dir: Path, meeting_dir: Path, target: float,
                                          speakers: int) -> None:
    for seed in (0, 1):
        conversation = _make(speech_dir, meeting_dir, 16000, speakers, False, False, seed=seed,
                             overlap_ratio=target)
        assert abs(conversation.overlap_ratio() - target) <= 0.05
        assert 54.0 <= conversation.num_samples / 16000 <= 66.0


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_overlap_ratio_matches_frame_counting(conversations: dict, case: tuple) -> None:
    count = _frame_activity(conversations[case]).sum(axis=0)
    assert conversations[case].overlap_ratio() == pytest.approx(np.sum(count >= 2) / np.sum(count >= 1), abs=1e-9)


def test_zero_overlap_target_gives_no_overlap(speech_dir: Path, meeting_dir: Path) -> None:
    conversation = _make(speech_dir, meeting_dir, 16000, 3, False, False, overlap_ratio=0.0, duration=30.0)
    assert conversation.overlap_ratio() == 0.0
    assert _frame_activity(conversation).sum(axis=0).max() == 1


# -- files ---------------------------------------------------------------------------------------


def test_write_and_read_back(conversations: dict, tmp_path: Path) -> None:
    case = (48000, 4, True, True)
    conversation = conversations[case]
    conversation.write(tmp_path / "conv")
    folder = tmp_path / "conv"
    mixture, rate = sf.read(folder / "mixture.wav", dtype="float32")
    assert rate == 48000 and np.array_equal(mixture, conversation.mixture)
    total = np.zeros_like(mixture)
    for index, speaker in enumerate(conversation.diarization.speakers):
        track, _ = sf.read(folder / f"s{index}.wav", dtype="float32")
        assert np.array_equal(track, conversation.references[speaker])
        total += track
    noise, _ = sf.read(folder / "noise.wav", dtype="float32")
    assert np.array_equal(total + noise, mixture)
    assert Diarization.from_rttm(folder / "reference.rttm").speakers == conversation.diarization.speakers
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["seed"] == 7
    assert meta["settings"]["num_speakers"] == 4 and meta["settings"]["sample_rate"] == 48000
    assert [s["label"] for s in meta["speakers"]] == conversation.diarization.speakers
    assert meta["files"]["tracks"] == {f"s{i}.wav": s for i, s in enumerate(conversation.diarization.speakers)}
    assert meta["placements"] and all("source" in p for p in meta["placements"])
    with pytest.raises(OutputError):
        conversation.write(folder)
    dry = conversations[(16000, 2, False, False)]
    dry.write(folder, overwrite=True)  # replaces, and leaves no stale s2/s3/noise files
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "mixture.wav", "reference.rttm",
                                                        "s0.wav", "s1.wav"]


def test_generate_set_is_reproducible_conversation_by_conversation(speech_dir: Path, tmp_path: Path) -> None:
    spec = ConversationSpec(duration=15.0)
    folders = generate_set(speech_dir, tmp_path / "set", 2, spec, seed=42)
    assert [f.name for f in folders] == ["conv_000", "conv_001"]
    again = generate_set(speech_dir, tmp_path / "again", 2, spec, seed=42)
    for first, second in zip(folders, again):
        # Compare samples, not bytes: float WAVs carry a PEAK chunk with a time stamp.
        for name in ("mixture.wav", "s0.wav", "s1.wav"):
            assert np.array_equal(sf.read(first / name, dtype="float32")[0], sf.read(second / name, dtype="float32")[0])
        assert (first / "reference.rttm").read_text() == (second / "reference.rttm").read_text()
        first_meta, second_meta = (json.loads((f / "meta.json").read_text()) for f in (first, second))
        assert first_meta == second_meta
    alone = generate_conversation(speech_dir, spec, conversation_seed(42, 1), uri="conv_001")
    mixture, _ = sf.read(folders[1] / "mixture.wav", dtype="float32")
    assert np.array_equal(mixture, alone.mixture)
    assert (folders[1] / "reference.rttm").read_text() == alone.diarization.to_rttm()
    assert json.loads((folders[1] / "meta.json").read_text())["set"] == {"seed": 42, "index": 1, "count": 2}


# -- settings and errors -----------------------------------------------------------------------


def test_bad_settings_are_refused(speech_dir: Path, meeting_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ConversationSpec(sample_rate=22050)  # 10 ms is not a whole number of samples
    with pytest.raises(ValueError):
        ConversationSpec(turn_duration=(5.0, 2.0))
    with pytest.raises(ValueError):
        generate_conversation(speech_dir, ConversationSpec(reverb=True), 0)
    with pytest.raises(ValueError):
        generate_conversation(speech_dir, ConversationSpec(noise_snr=10.0), 0)
    with pytest.raises(InputError):
        generate_conversation(speech_dir, ConversationSpec(num_speakers=11), 0)
    with pytest.raises(InputError):  # the glob catches 84 s recordings, not impulse responses
        generate_conversation(speech_dir, ConversationSpec(reverb=True, rir_glob="*.wav", duration=5.0), 0,
                              rir_dir=meeting_dir)
    with pytest.raises(InputError):
        generate_conversation(tmp_path, ConversationSpec(), 0)
