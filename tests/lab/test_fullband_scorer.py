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


@pytest.fixture(autouse=True)
def _restore_pipeline_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    """``adapt_once_per_conversation`` replaces the pipeline's adaptation stages for the rest of a
    scoring run; after each test here the real ones come back."""
    for name in ("learn_episode_voices", "learn_episode_top_octave"):
        monkeypatch.setattr(podsep.pipeline, name, getattr(podsep.pipeline, name))


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


def test_the_top_octave_is_learnt_once_per_separator_and_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_octave(separator, *args):
        calls.append((separator, args[-2]))
        return f"octave-{len(calls)}", {"used": True}

    monkeypatch.setattr(podsep.pipeline, "learn_episode_voices", lambda separator, *args: (separator, {}))
    monkeypatch.setattr(podsep.pipeline, "learn_episode_top_octave", fake_octave)
    _scorer().adapt_once_per_conversation()
    learn = podsep.pipeline.learn_episode_top_octave
    separator, other = object(), object()
    first = learn(separator, "source", "activity", "regions", "settings", "run", "fingerprint-a", {})
    again = learn(separator, "another source", "activity", "regions", "settings", "run", "fingerprint-a", {})
    assert first[0] == again[0] == "octave-1" and again[1] == {"used": True} and again[1] is not first[1]
    assert learn(separator, "source", "activity", "regions", "settings", "run", "fingerprint-b", {})[0] == "octave-2"
    assert learn(other, "source", "activity", "regions", "settings", "run", "fingerprint-a", {})[0] == "octave-3"
    assert len(calls) == 3


class _Weights:
    """A stand-in for a separator with weights (an embedded model has their sha256)."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256


def test_the_adaptation_cache_serves_a_later_run_and_skips_separators_without_weights(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--adapt-cache DIR``: a later run (a fresh process: a fresh in-memory table) with the same
    weights and recording loads the adapted model instead of adapting again; other weights or another
    recording adapt; an oracle (no weights) is never written to the cache."""
    calls = []

    def fake_learn(separator, *args):
        calls.append((getattr(separator, "sha256", None), args[-1]))
        return f"adapted-{len(calls)}", {"used": True, "steps": 100}

    def run(separator, fingerprint):
        monkeypatch.setattr(podsep.pipeline, "learn_episode_voices", fake_learn)
        _scorer().adapt_once_per_conversation(tmp_path / "cache")
        return podsep.pipeline.learn_episode_voices(separator, "source", "activity", fingerprint)

    weights = _Weights("ab" * 32)
    assert run(weights, "f" * 64) == ("adapted-1", {"used": True, "steps": 100})
    assert run(_Weights("ab" * 32), "f" * 64) == ("adapted-1", {"used": True, "steps": 100})  # from disk
    assert len(calls) == 1
    assert run(_Weights("cd" * 32), "f" * 64)[0] == "adapted-2"
    assert run(weights, "e" * 64)[0] == "adapted-3"
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == 3
    assert run(object(), "f" * 64)[0] == "adapted-4"  # an oracle: adapted (here, asked) every time, never cached
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == 3 and not list((tmp_path / "cache").glob("*.partial"))
    with_network = _Weights("ab" * 32)
    with_network.high_band_sha256 = "12" * 32  # the same weights with a top-octave network: another model
    assert run(with_network, "f" * 64)[0] == "adapted-5"


def test_separator_is_kept_as_given_unless_adapt_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = _scorer()
    assert scorer.fixed_model() == {"separation.adapt": "off"}
    monkeypatch.setattr(scorer, "ADAPT", True)
    assert scorer.fixed_model() == {}
    monkeypatch.setattr(scorer, "TOP_OCTAVE_ADAPT", False)  # --no-top-octave-adapt: the separator alone
    assert scorer.fixed_model() == {"separation.adapt_top_octave": False}


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


def test_the_energy_target_is_also_counted_without_buried_voices() -> None:
    """A voice whose overlaps hold it 10 dB or more below the rest (duplicate's SI-SDR in the band) is
    counted apart: oracle sources miss the energy target there too, so the split shows whose miss it is."""
    scorer = _scorer()

    def voice(energy: float, low: float = 10.0) -> dict:
        return {"energy_band_db": energy, "energy_8k_db": energy, "si_sdr_band": 5.0, "si_sdr_8k": 5.0,
                "si_sdr_low": low, "si_sdr_full": 5.0}

    rebuilt = [voice(0.5), voice(-4.0), voice(-8.0), voice(1.0)]
    duplicate = [voice(0.0, low=2.0), voice(0.0, low=-2.0), voice(20.0, low=-15.0), voice(0.0, low=-9.9)]
    result = scorer.verdict("set", {"rebuild": rebuilt, "duplicate": duplicate}, eight_k=True)
    assert result["energy_band_ok"] == 2 and result["energy_8k_ok"] == 2
    assert result["voices_not_buried"] == 3 and result["energy_ok_not_buried"] == 2
    rebuilt[3]["energy_8k_db"] = 3.5  # within +-3 dB in the band but not above 8 kHz: a miss
    result = scorer.verdict("set", {"rebuild": rebuilt, "duplicate": duplicate}, eight_k=True)
    assert result["energy_ok_not_buried"] == 1


def test_the_seam_table_gives_what_the_references_themselves_would_score(capsys) -> None:
    """At a seam the input changes from one voice to two while the reference stays one voice, so a
    perfect track's change is not the input's: the table reports the references' own ratio beside
    the track's, the yardstick for the target "no larger than the original"."""
    scorer = _scorer()

    def seam(track: float, source: float, reference: float) -> dict:
        return {"rendering": "rebuild", "kind": "original/separated", "lsd_track": track, "lsd_input": source,
                "lsd_reference": reference, "voice_to_rest_db": 0.0}

    rows = [seam(12.0, 10.0, 11.0), seam(9.0, 10.0, 13.0), {**seam(30.0, 1.0, 1.0), "kind": "separated/separated"}]
    (summary,) = scorer.print_seam_table([("set", rows)])
    assert summary["seams"] == 2
    assert summary["ratio_mean"] == pytest.approx((1.2 + 0.9) / 2)
    assert summary["reference_ratio_mean"] == pytest.approx((1.1 + 1.3) / 2)
    assert "ref/input" in capsys.readouterr().out


def test_a_clip_is_trimmed_at_its_active_speech_not_at_its_breath(tmp_path, monkeypatch) -> None:
    """The VCTK clips begin with up to a second of breath and room noise 20-30 dB under their speech;
    ``active`` (P.56's margin) trims it, ``peak40`` (sessions 9-34) kept it, so a pair's overlap could
    hold one voice over the other's lead-in."""
    import numpy as np
    import soundfile as sf

    scorer = _scorer()
    rate = 48000
    rng = np.random.default_rng(0)
    lead_in = 10 ** (-25 / 20) * rng.standard_normal(rate)  # 1 s, 25 dB under the speech
    speech = rng.standard_normal(2 * rate) * (1 + 0.5 * np.sin(np.arange(2 * rate) / rate * 2 * np.pi * 3))
    tail = 10 ** (-28 / 20) * rng.standard_normal(rate // 2)
    path = tmp_path / "clip.wav"
    sf.write(str(path), 0.05 * np.concatenate([lead_in, speech, tail]), rate, subtype="FLOAT")
    lengths = {}
    for trim in ("active", "peak40"):
        monkeypatch.setattr(scorer, "CLIP_TRIM", trim)
        lengths[trim] = scorer.read_clip(path, rate).size / rate
    assert lengths["peak40"] == pytest.approx(3.5, abs=0.05)  # the lead-in and the tail kept
    assert 2.0 <= lengths["active"] <= 2.0 + 0.02 + 0.2 + 0.01  # speech, 20 ms before, the 200 ms hang-over
    monkeypatch.setattr(scorer, "CLIP_TRIM", "loudest")
    with pytest.raises(ValueError, match="unknown clip trim"):
        scorer.read_clip(path, rate)


def test_one_voice_fraction_counts_the_overlap_frames_where_a_voice_is_not_really_there() -> None:
    import numpy as np

    scorer = _scorer()
    rate = 16000
    rng = np.random.default_rng(1)
    a = rng.standard_normal(3 * rate)
    b = rng.standard_normal(3 * rate)
    b[rate:rate + rate // 2] *= 10 ** (-30 / 20)  # B's first half second in the overlap: a lead-in
    assert scorer.one_voice_fraction({"A": a, "B": b}, rate, 2 * rate, rate) == pytest.approx(0.5, abs=0.06)
    assert scorer.one_voice_fraction({"A": a, "B": rng.standard_normal(3 * rate)}, rate, 2 * rate, rate) == 0.0


def test_silent_leak_measures_what_a_track_holds_where_its_voice_is_silent_in_an_overlap() -> None:
    import numpy as np

    scorer = _scorer()
    rate = 16000
    rng = np.random.default_rng(2)
    voice = rng.standard_normal(2 * rate)
    voice[rate // 2:rate] *= 10 ** (-30 / 20)  # silent for half a second inside the overlap
    other = rng.standard_normal(2 * rate)
    mask = np.zeros(2 * rate, bool)
    mask[rate // 4:5 * rate // 4] = True
    exact = scorer.silent_leak(voice, voice, mask, rate)
    assert exact["silent_leak_db"] == pytest.approx(0.0, abs=1e-9) and exact["silent_frames"] == 10
    leaky = scorer.silent_leak(voice, voice + 0.1 * other, mask, rate)  # the other voice 20 dB down
    assert leaky["silent_leak_db"] == pytest.approx(10.0, abs=1.0)  # 30 dB under, leak 20 dB under
    assert scorer.silent_leak(other, other, mask, rate) == {}  # no silent frame: nothing to say


def test_short_development_pairs_leave_out_the_evaluation_speakers(shared_dir) -> None:
    """``--dev-short``: pairs like the full-band evaluation's (about 2 s alone per voice) at 16 kHz,
    from VCTK training voices without the six speakers whose full-band clips are evaluated."""
    cases = _scorer().short_dev_cases("vctk", 3)
    evaluated = {"p238", "p255", "p301", "p314", "p317", "p360"}
    assert len(cases) == 3 and all(case.rate == 16000 for case in cases)
    for case in cases:
        assert len(case.references) == 2 and not set(case.references) & evaluated
        assert case.mixture.size == next(iter(case.references.values())).size
        assert 0.8 <= case.info["overlap_seconds"] <= 2.0  # the evaluation pairs' overlap rule
