"""``--voices DIR`` through the pipeline: a show's voices are kept and recognised.

Two episodes of the same two real voices (test-other, different utterances),
with reference turns, as a user with RTTMs would run them. The first is split
with names and saves the profile; the second, whose turns carry other labels
in the other order, gets the same names by voice alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import podsep
from podsep.errors import ModelError
from podsep.lab.synth import ConversationSpec, generate_conversation


@pytest.fixture(scope="module")
def two_episodes(shared_dir: Path, tmp_path_factory):
    speech = shared_dir / "data" / "librispeech" / "test-other"
    voices = sorted(p.name for p in speech.iterdir() if p.is_dir())[:2]
    pool = tmp_path_factory.mktemp("pool")
    for voice in voices:
        (pool / voice).mkdir()
        for file in sorted((speech / voice).iterdir()):
            (pool / voice / file.name).symlink_to(file)
    spec = ConversationSpec(num_speakers=2, duration=40.0, overlap_ratio=0.15)
    return [generate_conversation(pool, spec, seed, uri=f"episode{k}") for k, seed in enumerate((5, 6))]


def test_the_second_episode_is_named_by_the_voices_of_the_first(two_episodes, tmp_path):
    first, second = two_episodes
    profile = tmp_path / "show"
    overrides = {"separation.voices": str(profile), "separation.adapt": "off", "diarization.cache": False}
    order = first.diarization.speakers  # in order of first speech
    names = {order[0]: "Alice", order[1]: "Bob"}
    one = podsep.split(first.mixture, sample_rate=first.sample_rate, diarization=first.diarization,
                       names=[names[s] for s in order], overrides=overrides)
    assert set(one.tracks) == {"Alice", "Bob"}
    saved = json.loads((profile / "profile.json").read_text())
    assert sorted(v["name"] for v in saved["voices"]) == ["Alice", "Bob"]
    assert saved["embedder"] and saved["weights_sha256"]

    # The second episode's turns carry anonymous labels, the first voice as SPEAKER_01.
    anonymous = {order[0]: "SPEAKER_01", order[1]: "SPEAKER_00"}
    two = podsep.split(second.mixture, sample_rate=second.sample_rate,
                       diarization=second.diarization.rename(anonymous), overrides=overrides)
    assert set(two.tracks) == {"Alice", "Bob"}
    for voice, name in names.items():
        expected = [(round(t.start, 2), round(t.end, 2)) for t in second.diarization.turns if t.speaker == voice]
        found = [(round(t.start, 2), round(t.end, 2)) for t in two.diarization.turns if t.speaker == name]
        assert found == expected, name
    assert two.manifest["voices"]  # what the profile did is recorded
    reference = second.references[order[0]]
    assert np.corrcoef(reference, two.tracks["Alice"][0])[0, 1] > 0.5


def test_a_profile_of_another_embedding_space_is_refused_before_anything_is_written(two_episodes, tmp_path):
    first, _ = two_episodes
    profile = tmp_path / "show"
    podsep.split(first.mixture, sample_rate=first.sample_rate, diarization=first.diarization,
                 overrides={"separation.voices": str(profile), "separation.adapt": "off"})
    meta = json.loads((profile / "profile.json").read_text())
    assert meta["embedder"] == "ge2e"
    meta["embedder"] = "pyannote:pyannote/speaker-diarization-community-1"
    (profile / "profile.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="holds pyannote"):
        podsep.split(first.mixture, sample_rate=first.sample_rate, diarization=first.diarization,
                     output_dir=out, overrides={"separation.voices": str(profile), "separation.adapt": "off"})
    assert not out.exists() or not any(out.rglob("*.wav"))
