"""How ``podsep batch`` turns files, folders and lists into episodes (no models, no audio decoding)."""

from __future__ import annotations

from pathlib import Path

import pytest

from podsep.batch.inputs import discover
from podsep.errors import PodsepError


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_searched_recursively_and_mirrored(tmp_path):
    show = tmp_path / "show"
    for name in ("s1/a.mp3", "s1/b.WAV", "s2/deep/c.m4a", "s2/video.mp4", "notes.txt", "cover.jpg",
                 ".hidden.wav", ".git/d.wav"):
        touch(show / name)
    out = tmp_path / "out"
    episodes = discover([show], out)
    assert [e.label for e in episodes] == ["s1/a.mp3", "s1/b.WAV", "s2/video.mp4", "s2/deep/c.m4a"]
    by_label = {e.label: e for e in episodes}
    assert by_label["s2/deep/c.m4a"].result_folder == out.absolute() / "s2" / "deep" / "c"
    assert by_label["s1/a.mp3"].record_path == out.absolute() / "s1" / "a.podsep-status.json"
    assert all(e.problem is None for e in episodes)


def test_output_inside_the_input_folder_is_not_taken_as_input(tmp_path):
    touch(tmp_path / "ep.wav")
    touch(tmp_path / "split" / "ep" / "ep.SPEAKER_00.wav")
    episodes = discover([tmp_path], tmp_path / "split")
    assert [e.label for e in episodes] == ["ep.wav"]


def test_files_go_straight_under_the_output_and_missing_ones_are_problems(tmp_path):
    a = touch(tmp_path / "x" / "a.wav")
    episodes = discover([a, tmp_path / "gone.mp3"], tmp_path / "out")
    assert episodes[0].output_parent == (tmp_path / "out").absolute() and episodes[0].problem is None
    assert episodes[1].problem == "input not found"


def test_txt_list_relative_to_its_folder_with_comments(tmp_path):
    touch(tmp_path / "lists" / "eps" / "one.wav")
    touch(tmp_path / "two.flac")
    listing = tmp_path / "lists" / "batch.txt"
    listing.write_text(f"# my archive\n\neps/one.wav\n{tmp_path / 'two.flac'}\n  \nmissing.wav\n", encoding="utf-8")
    episodes = discover([listing], tmp_path / "out")
    assert [e.label for e in episodes] == ["eps/one.wav", "two.flac", "missing.wav"]
    assert episodes[0].result_folder == (tmp_path / "out").absolute() / "eps" / "one"
    assert episodes[1].result_folder == (tmp_path / "out").absolute() / "two"
    assert episodes[2].problem == "input not found (batch.txt line 6)"


def test_csv_list_with_per_episode_speakers_and_names(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        touch(tmp_path / name)
    listing = tmp_path / "episodes.csv"
    listing.write_text('\ufeffPath,Num Speakers,names\na.wav,3,"Ann,Bo,Cy"\nb.wav,,\nc.wav,1,Solo\n', encoding="utf-8")
    episodes = discover([listing], tmp_path / "out", names=["Host", "Guest"])
    assert [(e.num_speakers, e.names) for e in episodes] == [(3, ("Ann", "Bo", "Cy")), (None, ("Host", "Guest")),
                                                             (1, ("Solo",))]
    assert episodes[0].hints() == {"num_speakers": 3}


@pytest.mark.parametrize("text, fragment", [
    ("file,names\na.wav,x\n", "has no 'path' column"),
    ("path,num_speakers\na.wav,two\n", "episodes.csv line 2: num_speakers must be a whole number, not 'two'"),
    ("path,num_speakers\na.wav,0\n", "line 2: num_speakers must be at least 1"),
    ("path,min_speakers,max_speakers\na.wav,3,2\n", "line 2: min_speakers (3) is above max_speakers (2)"),
    ("path,num_speakers\n\n,2\n", "line 3: the 'path' cell is empty"),
    ("", "is empty"),
])
def test_bad_csv_lists_are_one_line_errors(tmp_path, text, fragment):
    touch(tmp_path / "a.wav")
    listing = tmp_path / "episodes.csv"
    listing.write_text(text, encoding="utf-8")
    with pytest.raises(PodsepError) as caught:
        discover([listing], tmp_path / "out")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_two_inputs_writing_one_result_folder_are_refused_per_episode(tmp_path):
    touch(tmp_path / "a" / "ep.mp3")
    touch(tmp_path / "b" / "ep.wav")
    episodes = discover([tmp_path / "a" / "ep.mp3", tmp_path / "b" / "ep.wav", tmp_path / "a" / "ep.mp3"],
                        tmp_path / "out")
    assert len(episodes) == 2  # the same file twice counts once
    assert episodes[0].problem is None
    assert "is already the result of" in episodes[1].problem


def test_diarization_option_needs_a_single_episode(tmp_path):
    touch(tmp_path / "a.wav")
    touch(tmp_path / "b.wav")
    with pytest.raises(PodsepError, match="describes one recording"):
        discover([tmp_path], tmp_path / "out", diarization="x.rttm")
    [episode] = discover([tmp_path / "a.wav"], tmp_path / "out", diarization="x.rttm")
    assert episode.diarization == "x.rttm"
