"""The editor files' formats on small hand-made inputs: quoting, escaping, odd names, edge cases."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from podsep.diarization import Turn
from podsep.editor import EditorInput, text_timeline, write_editor_files
from podsep.editor.geometry import coverage, merge, overlap_marks, simplify, talk_shares
from podsep.editor.labels import OVERLAP_PREFIX, labels_text
from podsep.editor.reaper import project_text, rpp_string, source_kind
from podsep.editor.review_page import fallback_sentences, model_sentences, page_html
from podsep.editor.style import confidence_colour, confidence_words, hms, hms_precise, speaker_colours
from podsep.errors import OutputError


def small(**changes) -> EditorInput:
    values = dict(
        stem="ep", duration=20.0, sample_rate=16000, num_samples=320000, speakers=("Alice", "Bob"),
        turns=((1.0, 6.0, "Alice"), (5.0, 9.0, "Bob"), (12.0, 19.0, "Alice")),
        overlaps=({"start": 5.0, "end": 6.0, "speakers": ["Alice", "Bob"], "handling": "separated",
                   "confidence": 0.8123, "windows": [{}]},),
        track_files={"Alice": "ep.Alice.wav", "Bob": "ep.Bob.wav"}, background_file=None,
        original_path="/data/shows/ep.mp3", warnings=(), fallbacks={}, models={})
    values.update(changes)
    return EditorInput(**values)


# -- EditorInput ---------------------------------------------------------------------------
def test_from_manifest_accepts_turns_and_finds_the_original(tmp_path, monkeypatch):
    original = tmp_path / "show" / "ep 1.wav"
    original.parent.mkdir()
    original.write_bytes(b"RIFF")
    monkeypatch.chdir(tmp_path)
    manifest = {"input": {"source": "show/ep 1.wav", "sample_rate": 8000, "num_samples": 80000, "duration": 10.0},
                "speakers": [{"name": "B"}, {"name": "A"}], "overlaps": [], "warnings": ["w"],
                "fallbacks": {"diarization_fallback": "offline"}, "models": {"separation": None}}
    data = EditorInput.from_manifest(manifest, [Turn(2.0, 3.0, "A"), (0.5, 1.0, "B"), (4.0, 5.0, "C")], "ep 1",
                                     {"A": "ep 1.A.wav"}, None)
    assert data.original_path == str(original.resolve()) and Path(data.original_path).is_absolute()
    assert data.speakers == ("B", "A", "C")  # manifest order first, then anyone only in the turns
    assert data.turns == ((0.5, 1.0, "B"), (2.0, 3.0, "A"), (4.0, 5.0, "C"))
    assert data.warnings == ("w",) and data.duration == 10.0
    for source in ("<waveform>", "missing.wav", str(tmp_path), None):
        manifest["input"]["source"] = source
        assert EditorInput.from_manifest(manifest, [], "x", {}, None).original_path is None


# -- geometry --------------------------------------------------------------------------------
def test_merge_and_simplify_bound_what_is_drawn():
    assert merge([(3, 4), (0, 1), (0.5, 2), (2.05, 2.5)], gap=0.1) == [(0, 2.5), (3, 4)]
    many = [(i * 0.5, i * 0.5 + 0.1) for i in range(7200)]  # an hour of 0.1 s blips
    drawn = simplify(many, resolution=3600 / 1000)
    assert len(drawn) <= 1000 / 3 + 1 and all(b - a >= 3.6 for a, b in drawn)
    assert simplify([(1.0, 1.001)], resolution=0.5) == [(1.0, 1.5)]  # never disappears


def test_coverage_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    spans = merge((float(a), float(a + b)) for a, b in zip(rng.uniform(0, 95, 40), rng.uniform(0.1, 4, 40)))
    grid = np.arange(0, 100, 0.001) + 0.0005
    talking = np.zeros(grid.size, bool)
    for a, b in spans:
        talking |= (grid >= a) & (grid < b)
    expected = talking.reshape(20, -1).mean(axis=1)
    assert np.allclose(coverage(spans, 100.0, 20), expected, atol=2e-3)
    assert coverage([], 10.0, 5).tolist() == [0.0] * 5


def test_close_overlaps_keep_their_lowest_confidence():
    data = small(overlaps=tuple({"start": s, "end": s + 0.2, "speakers": ["Alice", "Bob"], "handling": "separated",
                                 "confidence": c} for s, c in ((1.0, 0.9), (1.3, 0.4), (1.6, None))))
    (mark,) = overlap_marks(data, resolution=0.5)
    assert mark.count == 3 and mark.confidence == 0.4


def test_talk_shares_count_overlapped_speech_for_everyone():
    shares = talk_shares(small())
    assert shares["Alice"] == pytest.approx(12 / 16) and shares["Bob"] == pytest.approx(4 / 16)


# -- style -----------------------------------------------------------------------------------
def test_times_colours_and_words():
    assert hms(0) == "0:00:00" and hms(3725.4) == "1:02:05" and hms_precise(83.44) == "0:01:23.4"
    colours = list(speaker_colours([f"s{i}" for i in range(25)]).values())
    assert len(set(colours)) == 25 and all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in colours)
    assert confidence_words(0.6964) == "medium" and confidence_words(0.55) == "low" and confidence_words(None) == "none"
    assert confidence_colour(0.0) == "#D73027" and confidence_colour(1.0) == "#4575B4"
    assert confidence_colour(None) == confidence_colour(float("nan"))


# -- labels -----------------------------------------------------------------------------------
def test_labels_keep_odd_names_on_one_field():
    data = small(speakers=("Ann\tMarie", "Bob"), turns=((1.0, 2.0, "Ann\tMarie"), (1.5, 3.0, "Bob")),
                 overlaps=({"start": 1.5, "end": 2.0, "speakers": ["Ann\tMarie", "Bob"], "handling": "duplicated",
                            "confidence": None},))
    lines = labels_text(data).splitlines()
    assert [len(line.split("\t")) for line in lines] == [3, 3, 3]
    assert lines[0] == "1.000000\t2.000000\tAnn Marie"
    assert lines[1].split("\t")[2] == "Bob"  # a turn comes before an overlap starting with it
    assert lines[2].split("\t")[2] == f"{OVERLAP_PREFIX}Ann Marie + Bob (duplicated)"


# -- REAPER ------------------------------------------------------------------------------------
def test_rpp_strings_are_quoted_the_way_reaper_reads_them():
    assert rpp_string("Alice") == '"Alice"'
    assert rpp_string('say "hi"') == "'say \"hi\"'"
    assert rpp_string("""it's "x\"""") == "`it's \"x\"`"
    assert rpp_string("""`a' "b\"""") == "`'a' \"b\"`"
    assert rpp_string("two\nlines") == '"two lines"'
    assert [source_kind(n) for n in ("a.wav", "a.FLAC", "a.mp3", "a.opus", "a.m4a", "a.mp4")] == \
        ["WAVE", "FLAC", "MP3", "OPUS", "VIDEO", "VIDEO"]


def test_project_without_original_and_with_background():
    text = project_text(small(original_path=None, background_file="ep.background.wav"))
    assert "Original" not in text and 'FILE "ep.background.wav"' in text and 'NAME "Background"' in text
    assert text.count("<TRACK") == 3 and text.count("<ITEM") == 3 and text.count("POSITION 0\n") == 3
    lines = text.splitlines()
    assert sum(line.startswith("  MARKER ") for line in lines) == 2 * 3 + 1  # a region is two lines
    assert sum(line.strip().startswith("<") for line in lines) == sum(line.strip() == ">" for line in lines)


# -- page ----------------------------------------------------------------------------------
def test_page_escapes_names_and_encodes_file_names():
    data = small(speakers=("<b>Al</b>", "Bob"), turns=((1.0, 2.0, "<b>Al</b>"), (3.0, 4.0, "Bob")),
                 track_files={"<b>Al</b>": "ep.<b>Al<_b>.wav", "Bob": "ep #2 Zoë?.wav"}, original_path="/x/a b.wav")
    page = page_html(data)
    assert "<b>Al</b>" not in page and "&lt;b&gt;Al&lt;/b&gt;" in page
    assert 'src="ep%20%232%20Zo%C3%AB%3F.wav"' in page and 'src="file:///x/a%20b.wav"' in page
    assert not re.search(r"https?:", page)


def test_page_in_memory_input_without_overlaps():
    page = page_html(small(overlaps=(), original_path=None))
    assert page.count("<audio") == 2 and 'data-role="original"' not in page
    assert "No overlapped speech" in page and "audio given in memory" in page


def test_fallbacks_and_models_in_plain_words():
    sentences = fallback_sentences({"diarization_fallback": "gated model",
                                    "separation_fallback": {"reason": "offline", "policy": "duplicate"}})
    assert "embedded diarizer" in sentences[0] and "gated model" in sentences[0]
    assert "offline" in sentences[1] and "copied, still mixed" in sentences[1]
    (embedded,) = fallback_sentences({"separation_fallback": {"reason": "no network", "policy": "separate",
                                                              "separator": "embedded"}})
    assert "no network" in embedded and "embedded separator" in embedded
    rows = dict(model_sentences({"diarization": {"kind": "pyannote.audio.Pipeline", "source": "org/model",
                                                  "revision": "abcdef0123456789", "device": "cpu"},
                                 "separation": None}))
    assert rows["Diarization"] == "pyannote.audio pipeline org/model, revision abcdef012345, on cpu"
    assert rows["Separation"].startswith("none")
    page = page_html(small(warnings=("tracks were clipped",), fallbacks={"diarization_fallback": "x"}))
    assert "Read before you import" in page and "tracks were clipped" in page


# -- terminal -------------------------------------------------------------------------------
def test_text_timeline_one_line_per_speaker():
    data = small(speakers=("Alice", "Bob", "Someone with a very long name"),
                 turns=((0.0, 20.0, "Alice"), (5.0, 9.0, "Bob"), (10.0, 10.5, "Someone with a very long name")))
    lines = text_timeline(data, width=40)
    assert len(lines) == 3
    plain = [line.plain for line in lines]
    assert len({len(p) for p in plain}) == 1  # aligned
    assert "█" * 40 in plain[0] and plain[0].endswith("%")
    assert plain[2].startswith("Someone with a …")
    bar = plain[1].split("│")[1]
    assert bar[:10].strip() == "" and bar[10:18] == "█" * 8 and bar[18:].strip() == ""


def test_write_editor_files_fails_in_one_line(tmp_path):
    with pytest.raises(OutputError, match="cannot write editor files"):
        write_editor_files(tmp_path / "missing", small())
