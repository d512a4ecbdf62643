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


def test_a_development_run_writes_its_json_report(tmp_path, shared_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--json`` used to be ignored by the development modes: their figures then lived only in a log.

    Two VCTK training voices (the development material is any full-band folder of
    recordings per speaker; these are 16 kHz, enough to exercise the plumbing),
    one pair per rate.
    """
    import json
    import shutil
    import sys

    for speaker in ("p225", "p226"):
        (tmp_path / "voices" / speaker).mkdir(parents=True)
        for utterance in sorted((shared_dir / "data" / "vctk16k").glob(f"{speaker}_*.wav"))[:2]:
            shutil.copy(utterance, tmp_path / "voices" / speaker)
    report_path = tmp_path / "dev.json"
    monkeypatch.setattr(sys, "argv", ["score_fullband.py", "--dev-fullband", str(tmp_path / "voices"),
                                      "--conversations", "1", "--threads", "1", "--json", str(report_path)])
    _scorer().main()
    report = json.loads(report_path.read_text())
    embedded = [name for name in report["fullband"]["sets"] if "embedded" in name]
    assert len(embedded) == 2  # 48 and 44.1 kHz
    for name in embedded:
        voices = report["fullband"]["sets"][name]["voices"]["rebuild"]
        assert len(voices) == 2 and all("si_sdr_band" in voice for voice in voices)
    assert {verdict["set"] for verdict in report["fullband"]["targets"]} >= set(embedded)
    assert report["seconds"] > 0
