"""Assembly and assignment checked against exact ground truth.

Synthetic conversations built from real LibriSpeech speech, reference turns
(``diarization=``), and an oracle separator returning the reference sources in
shuffled order at random gains. With perfect parts, podsep's own stages
(windows, assignment, level restoration, crossfades) must reconstruct each
speaker's track almost exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import podsep
from podsep.lab.metrics import si_sdr
from podsep.lab.synth import ConversationSpec, generate_conversation
from podsep.lab.oracle import OracleSeparator

CROSSFADE = 0.03


def _split_with_oracle(shared_dir, *, speakers: int, rate: int, seed: int, duration: float = 60.0):
    spec = ConversationSpec(num_speakers=speakers, duration=duration, sample_rate=rate, overlap_ratio=0.2)
    conversation = generate_conversation(shared_dir / "data" / "librispeech", spec, seed)
    references = {label: conversation.references[label] for label in conversation.diarization.speakers}
    oracle = OracleSeparator(conversation.mixture, references, seed=seed)
    result = podsep.split(
        conversation.mixture, sample_rate=rate, diarization=conversation.diarization,
        separator=oracle, overrides={"assembly.crossfade": CROSSFADE},
    )
    return conversation, oracle, result


def _assignment_accuracy(result, oracle: OracleSeparator, rate: int) -> tuple[int, int]:
    calls = {round(call.start / rate, 3): call for call in oracle.calls}
    correct = total = 0
    for region in result.manifest["overlaps"]:
        for window in region["windows"]:
            call = calls[round(window["start"], 3)]
            total += 1
            correct += all(call.order[index] == speaker for speaker, index in window["assignment"].items())
    return correct, total


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_two_speakers_reconstructed_at_every_rate(shared_dir, rate):
    conversation, oracle, result = _split_with_oracle(shared_dir, speakers=2, rate=rate, seed=1)
    assert result.sample_rate == rate
    assert len(result.manifest["overlaps"]) >= 3, "the conversation should contain overlaps"
    for label, reference in conversation.references.items():
        track = result.tracks[label]
        assert track.shape == (1, conversation.mixture.shape[0])
        assert np.all(np.isfinite(track))
        assert si_sdr(reference, track[0]) >= 40.0, label
    correct, total = _assignment_accuracy(result, oracle, rate)
    assert total > 0 and correct / total >= 0.99


def test_three_speakers_and_many_seeds_assignment(shared_dir):
    correct = total = 0
    for seed in range(4):
        conversation, oracle, result = _split_with_oracle(shared_dir, speakers=3, rate=16000, seed=10 + seed, duration=45.0)
        for label, reference in conversation.references.items():
            assert si_sdr(reference, result.tracks[label][0]) >= 40.0, (seed, label)
        c, t = _assignment_accuracy(result, oracle, 16000)
        correct, total = correct + c, total + t
    assert total >= 10
    assert correct / total >= 0.99


def test_solo_regions_equal_the_input_outside_crossfades(shared_dir):
    rate = 44100
    conversation, _, result = _split_with_oracle(shared_dir, speakers=2, rate=rate, seed=3)
    mixture = conversation.mixture
    speakers = conversation.diarization.speakers
    activity = conversation.diarization.activity(rate, len(mixture), speakers)
    alone = activity & (activity.sum(axis=0) == 1)
    # Stay clear of every place where a crossfade may sit: any activity change or window edge.
    changes = np.flatnonzero(np.any(np.diff(activity.astype(np.int8), axis=1) != 0, axis=0)) + 1
    edges = [int(round(t * rate)) for region in result.manifest["overlaps"] for w in region["windows"]
             for t in (w["start"], w["end"], w["core_start"], w["core_end"])]
    near = np.zeros(len(mixture), dtype=bool)
    margin = int(2 * CROSSFADE * rate)
    for position in list(changes) + edges:
        near[max(0, position - margin):position + margin] = True
    checked = 0
    for row, label in enumerate(speakers):
        mask = alone[row] & ~near
        checked += int(mask.sum())
        assert np.array_equal(result.tracks[label][0][mask], mixture[mask]), label
        others_alone = alone[[r for r in range(len(speakers)) if r != row]].any(axis=0) & ~near
        assert not np.any(result.tracks[label][0][others_alone]), f"{label} leaks another speaker's solo speech"
    assert checked > 0.5 * rate * 10


def test_stereo_input_keeps_channels_and_levels(shared_dir):
    rate = 16000
    spec = ConversationSpec(num_speakers=2, duration=30.0, sample_rate=rate, overlap_ratio=0.2)
    conversation = generate_conversation(shared_dir / "data" / "librispeech", spec, 7)
    labels = conversation.diarization.speakers
    pans = {labels[0]: (0.9, 0.3), labels[1]: (0.2, 0.8)}  # each voice panned differently
    stereo_refs = {l: np.stack([conversation.references[l] * p for p in pans[l]]) for l in labels}
    stereo = sum(stereo_refs.values()).astype(np.float32)
    oracle = OracleSeparator(stereo.mean(axis=0), {l: stereo_refs[l].mean(axis=0) for l in labels}, seed=7)
    result = podsep.split(stereo, sample_rate=rate, diarization=conversation.diarization, separator=oracle)
    for label in labels:
        track = result.tracks[label]
        assert track.shape == stereo.shape
        for channel in range(2):
            assert si_sdr(stereo_refs[label][channel], track[channel]) >= 40.0


def test_long_crosstalk_is_chunked_and_stays_consistent(shared_dir):
    """40 s of both talking at once, cut into ~8 s chunks: inner chunks have no solo
    context, so only continuity with the previous chunk keeps the speakers apart."""
    import soundfile

    rate = 16000
    root = shared_dir / "data" / "librispeech" / "test-other"
    speakers = sorted(p for p in root.iterdir() if p.is_dir())[:2]

    def speech(folder, seconds):
        pieces = [soundfile.read(str(f), dtype="float32")[0] for f in sorted(folder.glob("*.flac"))]
        return np.concatenate(pieces)[: int(seconds * rate)]

    a = np.zeros(60 * rate, np.float32)
    b = np.zeros(60 * rate, np.float32)
    a[: 50 * rate] = speech(speakers[0], 50)
    b[10 * rate:] = speech(speakers[1], 50)
    mixture = a + b
    diarization = podsep.Diarization.from_turns([(0.0, 50.0, "A"), (10.0, 60.0, "B")])
    oracle = OracleSeparator(mixture, {"A": a, "B": b}, seed=4)
    result = podsep.split(mixture, sample_rate=rate, diarization=diarization, separator=oracle,
                          overrides={"overlaps.max_window": 12.0, "overlaps.chunk_overlap": 4.0})
    (region,) = result.manifest["overlaps"]
    assert len(region["windows"]) >= 4
    inner = region["windows"][1:-1]
    assert any("continuity" in w["evidence"] and "context" not in w["evidence"] for w in inner)
    correct, total = _assignment_accuracy(result, oracle, rate)
    assert correct == total
    assert si_sdr(a, result.tracks["A"][0]) >= 40.0
    assert si_sdr(b, result.tracks["B"][0]) >= 40.0


def test_given_turns_still_get_voice_evidence(shared_dir):
    """With reference turns (an RTTM) no diarizer runs, yet assignment and voice
    profiles need to know whose voice a source carries: the embedded GE2E
    encoder provides it, and is not loaded when voice evidence is switched off."""
    conversation, oracle, result = _split_with_oracle(shared_dir, speakers=2, rate=16000, seed=1, duration=30.0)
    described = result.manifest["models"]["diarization"]
    assert described["kind"] == "reference"
    assert described["voice_embeddings"]["kind"] == "podsep.embedded.VoiceEmbedder"
    windows = [w for region in result.manifest["overlaps"] for w in region["windows"]]
    assert windows and all("voice" in w["evidence"] for w in windows)
    correct, total = _assignment_accuracy(result, oracle, 16000)
    assert correct == total

    plain = podsep.split(conversation.mixture, sample_rate=16000, diarization=conversation.diarization,
                         separator=oracle, overrides={"assignment.embedding_weight": 0.0})
    assert "voice_embeddings" not in plain.manifest["models"]["diarization"]
    assert all("voice" not in w["evidence"] for region in plain.manifest["overlaps"] for w in region["windows"])
