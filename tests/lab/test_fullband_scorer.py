"""``scripts/score_fullband.py --adapt``: the default product's separator, adapted once per conversation.

The full-band table renders each conversation six ways with one separator; with
``--adapt`` the separator is podsep's default (adapted to the conversation's
voices), and every rendering must use the *same* adapted model, or the columns
would differ by adaptation as well as by rendering (and the table would cost six
adaptations per conversation).
"""

from __future__ import annotations

import pytest

import podsep.pipeline
from script_loader import load_script


def _scorer():
    return load_script("score_fullband")


def test_adaptation_runs_once_per_separator_and_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_learn(separator, *args):
        calls.append((separator, args[-1]))
        return f"adapted-{len(calls)}", {"used": True}

    monkeypatch.setattr(podsep.pipeline, "learn_episode_voices", fake_learn)
    _scorer().adapt_once_per_conversation()
    learn = podsep.pipeline.learn_episode_voices
    separator, other = object(), object()
    first = learn(separator, "source", "activity", "fingerprint-a")
    again = learn(separator, "another source object", "activity", "fingerprint-a")
    assert first[0] == again[0] == "adapted-1"
    assert again[1] == {"used": True} and again[1] is not first[1]  # each run gets its own manifest entry
    assert learn(separator, "source", "activity", "fingerprint-b")[0] == "adapted-2"
    assert learn(other, "source", "activity", "fingerprint-a")[0] == "adapted-3"
    assert len(calls) == 3


def test_separator_is_kept_as_given_unless_adapt_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = _scorer()
    assert scorer.fixed_model() == {"separation.adapt": "off"}
    monkeypatch.setattr(scorer, "ADAPT", True)
    assert scorer.fixed_model() == {}
