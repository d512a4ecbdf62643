"""Long recordings are diarized in pieces whose speakers are linked by voice."""

from __future__ import annotations

import numpy as np
import pytest

from podsep.models.chunked import ChunkedDiarizer, link_speakers, quiet_cut_points
from podsep.lab.metrics import diarization_error
from podsep.lab.synth import ConversationSpec, generate_conversation


def test_linking_follows_voices_and_never_merges_one_piece():
    rng = np.random.default_rng(0)
    voices = rng.standard_normal((3, 64))
    items, pieces, truth = [], [], []
    for piece in range(4):
        for voice in rng.permutation(3)[: 2 + piece % 2]:
            items.append(voices[voice] + 0.2 * rng.standard_normal(64))
            pieces.append(piece)
            truth.append(int(voice))
    groups = link_speakers(np.array(items), pieces, threshold=0.5)
    assert len(set(groups)) == 3
    for a in range(len(items)):
        for b in range(len(items)):
            assert (groups[a] == groups[b]) == (truth[a] == truth[b])
    forced = link_speakers(np.array(items), pieces, threshold=0.5, exact=5)
    assert len(set(forced)) == 5
    for piece in set(pieces):  # two speakers of one piece are never one group
        members = [g for g, p in zip(forced, pieces) if p == piece]
        assert len(members) == len(set(members))


def test_cuts_fall_in_quiet_moments():
    rate = 1000
    rng = np.random.default_rng(1)
    signal = rng.standard_normal(300 * rate).astype(np.float32)
    signal[95 * rate:96 * rate] = 0.0
    signal[205 * rate:206 * rate] = 0.0
    cuts = quiet_cut_points(signal, rate, every=100.0, search=10.0)
    assert len(cuts) == 2
    assert 95.0 <= cuts[0] <= 96.0 and 205.0 <= cuts[1] <= 206.0


@pytest.mark.slow
def test_chunked_embedded_diarization_matches_whole_file(shared_dir):
    from podsep.models.embedded import EmbeddedDiarizer

    spec = ConversationSpec(num_speakers=2, duration=120.0, overlap_ratio=0.1)
    conversation = generate_conversation(shared_dir / "data" / "librispeech" / "test-other", spec, 3)
    inner = EmbeddedDiarizer()
    whole = inner(conversation.mixture, 16000, num_speakers=2)
    chunked = ChunkedDiarizer(inner, chunk_seconds=40.0, search_seconds=5.0)
    pieces = chunked(conversation.mixture, 16000, num_speakers=2)
    assert len(chunked.last_cuts) >= 2
    assert len(pieces.speakers) == 2
    whole_der = diarization_error(conversation.diarization, whole, collar=0.25)["der"]
    pieces_der = diarization_error(conversation.diarization, pieces, collar=0.25)["der"]
    assert pieces_der <= whole_der + 0.10, (whole_der, pieces_der)
