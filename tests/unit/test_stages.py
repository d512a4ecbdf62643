"""Unit tests of the stages: diarization type, overlaps, assembly, assignment, settings, I/O."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from podsep.assembly import ORIGINAL, SEPARATED, SILENCE, SeparatedSpan, fade_weights, plan_track, render
from podsep.assignment import assign_window
from podsep.audio import Audio, analysis_copy, load_audio, resample, write_audio
from podsep.config import Settings, load_settings
from podsep.diarization import Diarization
from podsep.errors import InputError, OutputError, PodsepError
from podsep.export import safe_name, write_result
from podsep.intervals import Intervals
from podsep.overlaps import find_overlap_regions, plan_windows

REPO = Path(__file__).resolve().parents[2]


# -- diarization ------------------------------------------------------------------

def test_rttm_round_trip_and_merge(tmp_path):
    d = Diarization.from_turns([(0, 1, "A"), (0.5, 2, "A"), (1.5, 3, "B"), (4, 4, "C")], uri="ep 1")
    assert [(t.start, t.end, t.speaker) for t in d.turns] == [(0, 2, "A"), (1.5, 3, "B")]
    path = tmp_path / "x.rttm"
    path.write_text(d.to_rttm())
    again = Diarization.from_rttm(path)
    assert again.turns == d.turns and again.uri == "ep_1"
    assert d.speakers == ["A", "B"]


def test_rttm_with_several_recordings_needs_a_uri(tmp_path):
    path = tmp_path / "multi.rttm"
    path.write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> s1 <NA> <NA>\nSPEAKER b 1 0.0 1.0 <NA> <NA> s2 <NA> <NA>\n")
    with pytest.raises(InputError, match="2 recordings"):
        Diarization.from_rttm(path)
    assert Diarization.from_rttm(path, "b").speakers == ["s2"]
    path.write_text("SPEAKER a 1 zero 1.0 <NA> <NA> s1 <NA> <NA>\n")
    with pytest.raises(InputError, match="bad onset"):
        Diarization.from_rttm(path)


def test_activity_mask_uses_rounded_sample_bounds():
    d = Diarization.from_turns([(0.01, 0.02, "A")])
    mask = d.activity(1000, 30)
    assert mask.shape == (1, 30) and mask[0].sum() == 10 and mask[0, 10] and not mask[0, 20]


# -- overlaps -----------------------------------------------------------------------

def test_overlap_regions_merge_and_drop():
    d = Diarization.from_turns([(0, 10, "A"), (2, 3, "B"), (3.2, 4, "B"), (8, 8.02, "C")])
    regions = find_overlap_regions(d, min_duration=0.05, merge_gap=0.5)
    assert [(r.start, r.end) for r in regions] == [(2, 4)]
    assert regions[0].speakers == ("A", "B")
    # back-to-back turns are not an overlap
    assert find_overlap_regions(Diarization.from_turns([(0, 1, "A"), (1, 2, "B")])) == []


def test_long_regions_are_chunked_with_shared_audio():
    d = Diarization.from_turns([(0, 100, "A"), (10, 80, "B")])
    regions = find_overlap_regions(d)
    windows = plan_windows(regions, d, 100.0, context=1.0, max_window=20.0, chunk_overlap=4.0)
    assert len(windows) > 1 and all(w.duration <= 20.0 + 1e-9 for w in windows)
    cores = [(w.core_start, w.core_end) for w in windows]
    assert cores[0][0] == 10 and cores[-1][1] == 80
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(cores, cores[1:]))  # cores tile the region
    assert all(w1.end - w2.start >= 4.0 - 1e-9 for w1, w2 in zip(windows, windows[1:]))  # neighbours share audio
    assert windows[0].start == 9.0 and windows[-1].end == 81.0


def test_window_context_is_clipped_to_the_file():
    d = Diarization.from_turns([(0, 2, "A"), (0.2, 1.0, "B")])
    (window,) = plan_windows(find_overlap_regions(d), d, 2.0, context=1.0)
    assert window.start == 0.0 and window.end == 2.0


# -- crossfades and assembly -------------------------------------------------------

def test_fade_laws_keep_power_and_gain():
    out, into = fade_weights(1000, 0.0, "power")
    assert np.allclose(out ** 2 + into ** 2, 1.0)
    out, into = fade_weights(1000, 1.0, "power")
    assert np.allclose(out + into, 1.0)
    out, into = fade_weights(1000, 0.4, "power")
    assert np.allclose(out ** 2 + into ** 2 + 2 * 0.4 * out * into, 1.0)
    out, into = fade_weights(1000, 0.4, "gain")
    assert np.allclose(out + into, 1.0) and out[0] > 0.99 and into[-1] > 0.99


def test_assembly_plan_and_render_are_click_free():
    rate = 1000
    a, b = Intervals.of([(100, 600)]), Intervals.of([(400, 900)])
    span = SeparatedSpan(window=0, start=200, end=800, core_start=400, core_end=600)
    plan = plan_track(a, b, [span], {0}, rate, overlap_policy="separate", fade=30)
    kinds = [(s.kind, s.start, s.end) for s in plan.segments]
    assert kinds == [(SILENCE, 0, 100), (ORIGINAL, 100, 400), (SEPARATED, 400, 600), (SILENCE, 600, 1000)]
    # the original->separated fade lies on the solo side, before the overlap starts
    joint = [j for j in plan.joints if j.left.kind == ORIGINAL and j.right.kind == SEPARATED][0]
    assert (joint.start, joint.end) == (370, 400)
    tone = np.sin(np.arange(rate) * 0.05).astype(np.float32)[None, :]

    def read(segment, a, b):
        return tone[:, a:b]  # both renderings carry the same voice

    track = render(plan, 0, rate, read, 1)
    # identical signals on both sides of a joint: the correlation-compensated law is seamless
    assert np.allclose(track[0, 100 + 30:600], tone[0, 130:600], atol=1e-6)
    assert np.max(np.abs(np.diff(track[0]))) < 0.06  # no jump anywhere (the tone's own slope is 0.05)


def test_mute_policy_silences_unseparated_overlap():
    plan = plan_track(Intervals.of([(0, 1000)]), Intervals.of([(400, 600)]), [], set(), 1000,
                      overlap_policy="mute", fade=10)
    assert [(s.kind, s.start, s.end) for s in plan.segments] == [
        (ORIGINAL, 0, 400), (SILENCE, 400, 600), (ORIGINAL, 600, 1000)]
    # fades into the muted overlap lie inside A's own solo speech, never over B
    for joint in plan.joints:
        assert joint.end <= 400 or joint.start >= 600


def _hand_over_window():
    """A 3 s window at 1 kHz: A talks for 2 s, B from 1 s on (1 s of overlap); voices, mixture, activity."""
    rng = np.random.default_rng(0)
    n = 3000
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    a[2000:] = 0
    b[:1000] = 0
    return a, b, (a + b)[None, :], np.stack([np.arange(n) < 2000, np.arange(n) >= 1000])


def test_assignment_prefers_context_and_restores_level():
    a, b, mixture, activity = _hand_over_window()
    sources = np.stack([b * 0.01, a * 7.0])
    outcome = assign_window(mixture, sources, activity, ["A", "B"], ["A", "B"], 1000, min_context=0.1)
    assert outcome.source_index == {"A": 1, "B": 0}
    assert outcome.confidence > 0.99
    assert np.allclose(outcome.sources["A"][0], a, atol=1e-4)
    assert np.allclose(outcome.sources["B"][0], b, atol=1e-4)


def _unit(vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def test_voice_and_context_add_up_as_fitted_log_odds_and_the_core_weighs_most():
    """With reference voices, assignment adds the fitted log-odds of voice (whole and core) and context.

    The confidence is then the logistic of the summed margins; a separator can swap its
    outputs inside a window, so the core's voice can overrule both the context and the
    whole sources' voices. Without a reference voice for every speaker, context decides.
    """
    from podsep import assignment

    a, b, mixture, activity = _hand_over_window()
    sources = np.stack([a, b])  # the context says A=0, B=1
    references = {"A": _unit([1.0, 0.0, 0.0]), "B": _unit([0.0, 1.0, 0.0])}
    lean = np.stack([_unit([0.5, 0.45, 0.7]), _unit([0.45, 0.5, 0.7])])  # the whole sources: A=0 by a hair
    cores = np.stack([_unit([0.1, 1.0, 0.2]), _unit([1.0, 0.1, 0.2])])    # the cores: A=1, clearly
    outcome = assign_window(mixture, sources, activity, ["A", "B"], ["A", "B"], 1000, min_context=0.1,
                            source_embeddings=lean, core_embeddings=cores, reference_embeddings=references)
    assert outcome.source_index == {"A": 1, "B": 0}
    assert set(outcome.evidence) == {"voice", "voice_core", "context"}
    assert outcome.margins["context"] < 0 and outcome.margins["voice"] < 0 < outcome.margins["voice_core"]
    log_odds = (assignment.VOICE_SCALE * outcome.margins["voice"]
                + assignment.CORE_VOICE_SCALE * outcome.margins["voice_core"]
                + assignment.CONTEXT_WITH_VOICE * outcome.margins["context"])
    assert outcome.confidence == pytest.approx(1.0 / (1.0 + np.exp(-log_odds)), rel=1e-6)
    # without the cores, the context and the whole sources agree: A=0
    outcome = assign_window(mixture, sources, activity, ["A", "B"], ["A", "B"], 1000, min_context=0.1,
                            source_embeddings=lean, reference_embeddings=references)
    assert outcome.source_index == {"A": 0, "B": 1} and "voice_core" not in outcome.evidence
    # a core too short to embed: the whole sources' voice takes both voice weights, never turned around
    assert assignment.WHOLE_VOICE_WITHOUT_CORE_SCALE == max(0.0, assignment.VOICE_SCALE + assignment.CORE_VOICE_SCALE)
    outcome = assign_window(mixture, sources, activity, ["A", "B"], ["A", "B"], 1000, min_context=0.1,
                            source_embeddings=cores, reference_embeddings=references)
    assert outcome.source_index == {"A": 1, "B": 0}  # the clear voices outweigh the context
    log_odds = (assignment.WHOLE_VOICE_WITHOUT_CORE_SCALE * outcome.margins["voice"]
                + assignment.CONTEXT_WITH_VOICE * outcome.margins["context"])
    assert outcome.margins["voice"] > 0 and outcome.confidence == pytest.approx(1.0 / (1.0 + np.exp(-log_odds)), rel=1e-6)
    # without a reference voice for every speaker, context decides alone, on its own temperature
    outcome = assign_window(mixture, sources, activity, ["A", "B"], ["A", "B"], 1000, min_context=0.1,
                            source_embeddings=cores, reference_embeddings={"A": references["A"]})
    assert outcome.source_index == {"A": 0, "B": 1} and outcome.evidence == ["context"]
    expected = 1.0 / (1.0 + np.exp(-outcome.margins["context"] / assignment.CONFIDENCE_TEMPERATURE))
    assert outcome.confidence == pytest.approx(expected, rel=1e-6)


def test_each_source_is_embedded_whole_and_over_the_core_in_one_call():
    """The core's voice is the part the tracks keep; too short a core is not embedded alone."""
    from podsep.overlaps import Window
    from podsep.separate import MIN_CORE_VOICE, source_voices

    class Recorder:
        def __init__(self):
            self.calls = []

        def embed(self, clips, rate):
            self.calls.append([len(c) for c in clips])
            return np.stack([np.full(3, float(len(c))) for c in clips])

    rate = 16000
    sources = np.random.default_rng(1).standard_normal((2, 3 * rate)).astype(np.float32)
    window = Window(index=0, region=0, chunk=0, num_chunks=1, start=10.0, end=13.0, core_start=11.0, core_end=12.5,
                    speakers=("A", "B"))
    recorder = Recorder()
    whole, core = source_voices(recorder, sources, window, 10 * rate, rate)
    assert recorder.calls == [[3 * rate, 3 * rate, int(1.5 * rate), int(1.5 * rate)]]  # one call, four clips
    assert whole[:, 0].tolist() == [3 * rate] * 2 and core[:, 0].tolist() == [1.5 * rate] * 2
    short = Window(index=0, region=0, chunk=0, num_chunks=1, start=10.0, end=13.0, core_start=11.0,
                   core_end=11.0 + MIN_CORE_VOICE / 2, speakers=("A", "B"))
    whole, core = source_voices(recorder, sources, short, 10 * rate, rate)
    assert core is None and whole.shape[0] == 2 and len(recorder.calls[-1]) == 2


# -- settings ------------------------------------------------------------------------

def test_default_yaml_matches_code_defaults():
    documented = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert documented == Settings().to_dict()


def test_settings_layers_and_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("overlaps:\n  context: 0.5\nassembly:\n  crossfade: 0.01\n")
    settings = load_settings(path, {"overlaps.context": 0.25, "diarization.num_speakers": "2"})
    assert settings.overlaps.context == 0.25 and settings.assembly.crossfade == 0.01
    assert settings.diarization.num_speakers == 2
    path.write_text("overlaps:\n  contxt: 0.5\n")
    with pytest.raises(PodsepError, match="unknown setting 'overlaps.contxt'"):
        load_settings(path)
    with pytest.raises(PodsepError, match="policy"):
        load_settings(None, {"overlaps.policy": "blend"})
    with pytest.raises(PodsepError, match="min_speakers"):
        load_settings(None, {"diarization.min_speakers": 3, "diarization.max_speakers": 2})


# -- audio I/O --------------------------------------------------------------------------

def _tone(rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("suffix,args", [
    (".mp3", ["-c:a", "libmp3lame"]), (".m4a", ["-c:a", "aac"]), (".ogg", ["-c:a", "libvorbis"]),
    (".opus", ["-c:a", "libopus"]), (".flac", []), (".mkv", ["-c:a", "aac"]),
])
def test_decode_common_formats_keeps_rate_and_channels(tmp_path, suffix, args):
    rate = 48000
    source = tmp_path / "tone.wav"
    write_audio(source, _tone(rate, 1.0, 2), rate, fmt="wav", bit_depth="24")
    target = tmp_path / f"tone{suffix}"
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(source)]
    if suffix == ".mkv":  # a video file: black frames plus the audio
        command = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1", "-i", str(source),
                   "-shortest", "-c:v", "mpeg4"]
    subprocess.run(command + args + [str(target)], check=True)
    audio = load_audio(target)
    assert audio.sample_rate == rate and audio.num_channels == 2
    assert abs(audio.duration - 1.0) < 0.1


def test_write_formats_and_clipping(tmp_path):
    rate = 44100
    loud = _tone(rate) * 4
    assert write_audio(tmp_path / "a.wav", loud, rate, fmt="wav", bit_depth="16") is True
    assert write_audio(tmp_path / "b.wav", loud, rate, fmt="wav", bit_depth="float") is False
    write_audio(tmp_path / "c.flac", _tone(rate), rate, fmt="flac", bit_depth="24")
    write_audio(tmp_path / "d.mp3", _tone(rate), rate, fmt="mp3")
    for name in ("a.wav", "b.wav", "c.flac", "d.mp3"):
        audio = load_audio(tmp_path / name)
        assert audio.sample_rate == rate
    assert np.allclose(load_audio(tmp_path / "b.wav").samples, loud, atol=1e-6)
    assert not list(tmp_path.glob(".*partial*")), "temporary files left behind"


def test_resample_lengths_are_exact():
    for rate in (8000, 16000, 22050, 44100, 48000, 96000):
        x = np.random.default_rng(0).standard_normal(rate + 17).astype(np.float32)
        assert resample(x, rate, 16000).shape[0] == round((rate + 17) * 16000 / rate)
    audio = Audio.from_array(_tone(44100, 2.0, 2), 44100)
    assert analysis_copy(audio).shape == (32000,)


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(InputError, match="directory"):
        load_audio(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.mp3").write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(InputError) as caught:
        load_audio(tmp_path / "junk.mp3")
    assert "\n" not in str(caught.value)


# -- export ------------------------------------------------------------------------------

def test_export_is_atomic_and_refuses_to_overwrite(tmp_path):
    tracks = {"Alice": _tone(16000), "Bob": _tone(16000)}
    folder = tmp_path / "ep"
    files = write_result(folder, "ep", tracks, 16000, "", {"warnings": []}, fmt="wav", bit_depth="16", overwrite=False)
    assert sorted(p.name for p in folder.iterdir()) == ["ep.Alice.wav", "ep.Bob.wav", "ep.json", "ep.rttm"]
    assert files["manifest"].exists()
    with pytest.raises(OutputError, match="already exists"):
        write_result(folder, "ep", tracks, 16000, "", {}, fmt="wav", bit_depth="16", overwrite=False)
    write_result(folder, "ep", {"Carol": _tone(16000)}, 16000, "", {}, fmt="wav", bit_depth="16", overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["ep.Carol.wav", "ep.json", "ep.rttm"]
    assert [p.name for p in tmp_path.iterdir()] == ["ep"], "staging folders left behind"


def test_safe_names():
    for hostile in ("../../etc/passwd", "..", "a\\b", "c:d", "x\x00y"):
        name = safe_name(hostile)
        assert "/" not in name and "\\" not in name and "\x00" not in name and name not in (".", "..")
    assert safe_name("Zoë Ünal") == "Zoë Ünal"
    assert safe_name("   ") == "unnamed"


def test_interval_set_algebra_matches_masks():
    rng = np.random.default_rng(5)
    for _ in range(50):
        pairs_a = [tuple(sorted(rng.integers(0, 200, 2))) for _ in range(6)]
        pairs_b = [tuple(sorted(rng.integers(0, 200, 2))) for _ in range(6)]
        a, b = Intervals.of(pairs_a), Intervals.of(pairs_b)
        mask_a, mask_b = a.mask(0, 200), b.mask(0, 200)
        assert np.array_equal(a.union(b).mask(0, 200), mask_a | mask_b)
        assert np.array_equal(a.intersect(b).mask(0, 200), mask_a & mask_b)
        assert np.array_equal(a.subtract(b).mask(0, 200), mask_a & ~mask_b)
        assert np.array_equal(a.contains(np.arange(200)), mask_a)
        start, end = sorted(rng.integers(0, 200, 2))
        assert a.touches(int(start), int(end)) == bool(mask_a[start:end].any())


def test_paths_that_look_like_options_or_protocols_are_plain_files(tmp_path, monkeypatch):
    rate = 16000
    monkeypatch.chdir(tmp_path)
    for name in ("-y.mp3", "concat:x.mp3", "it's $(id).mp3"):
        write_audio(tmp_path / "t.wav", _tone(rate), rate)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "t.wav"), str(tmp_path / "x.mp3")], check=True)
        (tmp_path / "x.mp3").rename(tmp_path / name)
        audio = load_audio(name)  # relative, as a user would type it
        assert audio.sample_rate == rate and abs(audio.duration - 1.0) < 0.1
