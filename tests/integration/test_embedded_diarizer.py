"""The embedded (offline, wheel-shipped weights) diarizer on real speech.

These run the real models: Silero VAD from the ``silero-vad`` wheel and the
GE2E encoder weights from the ``resemblyzer`` wheel. No network, no token.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from podsep.diarization import Diarization

pytestmark = pytest.mark.slow

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The target for the two-person pyannote sample: DER at most 10 % (collar 0.25,
# overlap scored). Measured 9.1 % with the packaged overlap detector.
SAMPLE_DER_LIMIT = 0.10


@pytest.fixture(scope="module")
def diarizer():
    # One thread: the CI machine has 2 cores shared with other jobs, and an
    # oversubscribed LSTM runs many times slower than a single-threaded one.
    import torch

    from podsep.models.embedded import EmbeddedDiarizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield EmbeddedDiarizer()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample(shared_dir):
    folder = shared_dir / "data" / "pyannote-sample"
    audio, sr = sf.read(str(folder / "sample.wav"), dtype="float32")
    return audio, sr, Diarization.from_rttm(folder / "sample.rttm")


def _der(reference: Diarization, hypothesis: Diarization, collar: float = 0.25) -> float:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uem = Timeline([Segment(0, 30)])
        return DiarizationErrorRate(collar=collar, skip_overlap=False)(
            reference.to_annotation(), hypothesis.to_annotation(), uem=uem
        )


def test_sample_der_below_limit(diarizer, sample):
    audio, sr, reference = sample
    steps: list[str] = []
    hypothesis = diarizer(audio, sr, hook=lambda step, artifact=None, **kw: steps.append(step))
    assert len(hypothesis.speakers) == 2
    assert _der(reference, hypothesis) < SAMPLE_DER_LIMIT
    assert "speech_activity" in steps and "embeddings" in steps and "clustering" in steps


def test_num_speakers_is_honoured(diarizer, sample):
    audio, sr, _ = sample
    for count in (1, 3):
        assert len(diarizer(audio, sr, num_speakers=count).speakers) == count
    assert len(diarizer(audio, sr, max_speakers=1).speakers) == 1


def _monologue(shared_dir, reader: str, seconds: float) -> np.ndarray:
    folder = shared_dir / "data" / "librispeech" / "test-other" / reader
    parts = [sf.read(str(p), dtype="float32")[0] for p in sorted(folder.glob("*.flac"))]
    return np.concatenate(parts)[: int(seconds * 16000)]


@pytest.mark.parametrize("reader", ["1998", "2609"])
def test_monologue_gives_one_speaker(diarizer, shared_dir, reader):
    # Centring on the recording's mean used to spread one voice over two or
    # three clusters; the one-voice test against the population mean stops that.
    assert len(diarizer(_monologue(shared_dir, reader, 30), 16000).speakers) == 1


def test_min_speakers_overrides_one_voice_test(diarizer, shared_dir):
    # The user's bound wins over the one-voice test (the count above it is the estimate's).
    assert len(diarizer(_monologue(shared_dir, "1998", 30), 16000, min_speakers=2).speakers) >= 2


def test_generated_conversation_is_not_taken_for_one_voice(diarizer, shared_dir):
    from podsep.lab.synth import ConversationSpec, generate_conversation

    spec = ConversationSpec(num_speakers=2, duration=30.0, overlap_ratio=0.1)
    conversation = generate_conversation(shared_dir / "data" / "librispeech" / "test-other", spec, seed=1)
    assert len(diarizer(conversation.mixture, conversation.sample_rate).speakers) == 2


def test_other_sample_rate_is_resampled(diarizer, sample):
    import torch
    import torchaudio.functional as AF

    audio, sr, reference = sample
    audio8k = AF.resample(torch.from_numpy(audio), sr, 8000).numpy()
    hypothesis = diarizer(audio8k, 8000, num_speakers=2)
    assert hypothesis.end <= 30.0 + 1e-6
    assert _der(reference, hypothesis) < 0.5


@pytest.mark.parametrize("samples", [0, 1, 16000, 5 * 16000])
def test_silence_gives_empty_diarization(diarizer, samples):
    result = diarizer(np.zeros(samples, dtype=np.float32), 16000)
    assert isinstance(result, Diarization) and result.turns == ()


def test_empty_ami_file(diarizer, shared_dir):
    audio, sr = sf.read(str(shared_dir / "data" / "ami" / "empty.wav"), dtype="float32")
    assert diarizer(audio, sr).turns == ()


def test_embed_separates_two_librispeech_speakers(diarizer, shared_dir):
    folder = shared_dir / "data" / "librispeech" / "test-other"
    speakers = sorted(p for p in folder.iterdir() if p.is_dir())[:2]
    clips = []
    for speaker in speakers:
        for path in sorted(speaker.glob("*.flac"))[:2]:
            audio, sr = sf.read(str(path), dtype="float32")
            clips.append(audio)
    assert len(clips) == 4
    vectors = diarizer.embed(clips, sr)
    assert vectors.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    same = min(sims[0, 1], sims[2, 3])
    cross = max(sims[0, 2], sims[0, 3], sims[1, 2], sims[1, 3])
    assert same > cross + 0.1


def test_embed_handles_silent_clip(diarizer):
    vectors = diarizer.embed([np.zeros(8000, dtype=np.float32)], 16000)
    assert vectors.shape == (1, 256) and not np.any(vectors)


def test_describe_is_json_ready(diarizer):
    import json

    described = json.loads(json.dumps(diarizer.describe()))
    assert described["voice_activity"]["package"] and described["speaker_embedding"]["package"]
    assert "overlap" in described


def test_unknown_tunable_is_rejected():
    from podsep.models.embedded import EmbeddedDiarizer

    with pytest.raises(TypeError):
        EmbeddedDiarizer(not_a_setting=1)
