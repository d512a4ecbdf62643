"""The command line and the Python API, end to end, and every way they must fail cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import podsep
from podsep.audio import load_audio, write_audio
from podsep.diarization import Diarization

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "podsep", *args], capture_output=True, text=True,
                          env=environment, cwd=cwd, timeout=600)


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    progress = ("[", " ")  # plain progress lines may precede the error when stderr is not a terminal
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(progress)]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and lines[0].startswith("podsep: error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def stereo_44k_mp3(tmp_path_factory, two_speaker_wav) -> Path:
    """The real sample as a 44.1 kHz stereo MP3: decode, rate and channels are all exercised."""
    folder = tmp_path_factory.mktemp("input")
    target = folder / "Interview 1 – Zoë.mp3"  # spaces and non-ASCII in the name
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(two_speaker_wav), "-ar", "44100", "-ac", "2",
                    "-c:a", "libmp3lame", "-q:a", "2", str(target)], check=True)
    return target


def test_cli_end_to_end_with_fixture_models(tmp_path, fixture_models, stereo_44k_mp3):
    result = run_cli("split", str(stereo_44k_mp3), "-o", str(tmp_path / "out"), "--num-speakers", "2",
                     "--names", "Alice,Bob", "--diarization-model", str(fixture_models["pyannote"]),
                     "--separation-model", str(fixture_models["sepformer"]), "--bit-depth", "24")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / stereo_44k_mp3.stem
    decoded = load_audio(stereo_44k_mp3)
    manifest = json.loads((folder / f"{stereo_44k_mp3.stem}.json").read_text())
    names = [s["name"] for s in manifest["speakers"]]
    assert set(names) <= {"Alice", "Bob"} and names
    for name in names:
        info = soundfile.info(str(folder / f"{stereo_44k_mp3.stem}.{name}.wav"))
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, decoded.num_frames)
        assert info.subtype == "PCM_24"
    rttm = Diarization.from_rttm(folder / f"{stereo_44k_mp3.stem}.rttm")
    assert set(rttm.speakers) == set(names)
    assert manifest["models"]["diarization"]["source"] == str(fixture_models["pyannote"])
    assert manifest["models"]["separation"]["source"] == str(fixture_models["sepformer"])
    assert set(manifest["timings"]) >= {"decode", "diarization", "overlaps", "separation", "assignment", "assembly"}
    for region in manifest["overlaps"]:
        assert region["handling"] in {"separated", "mixture"}
        for window in region["windows"]:
            assert 0.0 <= window["confidence"] <= 1.0
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "staging left behind"
    # progress went to stderr as plain lines (not a TTY), nothing to stdout
    assert "Separating overlaps" in result.stderr and result.stdout == ""


def test_python_api_is_silent_and_reports_through_the_hook(tmp_path, two_speaker_wav, shared_dir, capfd):

    audio = load_audio(two_speaker_wav)
    events: list[tuple[str, int | None, int | None]] = []

    def hook(step, artifact=None, *, completed=None, total=None):
        events.append((step, completed, total))

    class Mixture:  # a trivial separator double: the mixture twice
        def __call__(self, window, rate):
            return np.stack([window, 0.5 * window])

    result = podsep.split(two_speaker_wav, diarization=shared_dir / "data" / "pyannote-sample" / "sample.rttm",
                          separator=Mixture(), hook=hook, output_dir=tmp_path, names=["Ann", "Ben"])
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    stages = [step for step, *_ in events if "/" not in step]
    for stage in ("decode", "diarization", "overlaps", "separation", "assembly", "export", "done"):
        assert stage in stages
    assert set(result.manifest["timings"]) >= {"separation", "assignment"}  # timed apart, reported as one stage
    assert stages.index("decode") < stages.index("separation") < stages.index("assembly") < stages.index("done")
    assert result.speakers == ["Ann", "Ben"]
    assert all(track.shape == audio.samples.shape for track in result.tracks.values())
    assert result.files["manifest"].exists()


def test_single_speaker_gives_one_correct_track(tmp_path, two_speaker_wav):
    rttm = tmp_path / "one.rttm"
    rttm.write_text("SPEAKER sample 1 2.000 5.000 <NA> <NA> solo <NA> <NA>\n")
    result = podsep.split(two_speaker_wav, diarization=rttm, output_dir=tmp_path / "out")
    audio = load_audio(two_speaker_wav)
    (track,) = result.tracks.values()
    assert result.manifest["overlaps"] == [] and result.manifest["models"]["separation"] is None
    inside = slice(int(2.1 * 16000), int(6.9 * 16000))
    assert np.array_equal(track[:, inside], audio.samples[:, inside])
    assert not np.any(track[:, : int(1.9 * 16000)]) and not np.any(track[:, int(7.1 * 16000):])


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "corrupt", "silent"])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, case):
    path = {"missing": tmp_path / "nope.wav", "directory": tmp_path, "empty": tmp_path / "empty.wav",
            "corrupt": tmp_path / "corrupt.mp3", "silent": tmp_path / "silent.wav"}[case]
    if case == "empty":
        path.write_bytes(b"")
    if case == "corrupt":
        path.write_bytes(b"ID3\x03\x00" + os.urandom(4000))
    if case == "silent":
        write_audio(path, np.zeros((1, 16000 * 3), np.float32), 16000)
    out = tmp_path / "out"
    result = run_cli("split", str(path), "-o", str(out))
    assert_clean_failure(result)
    assert not out.exists() or not any(out.iterdir())


def test_truncated_wav_is_decoded_or_refused_cleanly(tmp_path, two_speaker_wav):
    data = two_speaker_wav.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 3])
    result = run_cli("split", str(path), "-o", str(tmp_path / "out"), "--diarization", str(tmp_path / "none.rttm"))
    assert_clean_failure(result, "diarization file not found")


def test_missing_model_folder_and_offline_hub(tmp_path, two_speaker_wav):
    result = run_cli("split", str(two_speaker_wav), "-o", str(tmp_path / "a"), "--diarizer", "pyannote",
                     "--diarization-model", str(tmp_path / "no-such-model"))
    assert_clean_failure(result, "diarization model folder not found")
    token = "hf_" + "Q" * 30
    result = run_cli("split", str(two_speaker_wav), "-o", str(tmp_path / "b"), "--hf-token", token, "--diarizer", "pyannote")
    assert_clean_failure(result, "pyannote/speaker-diarization-community-1", "cannot be reached")
    assert token not in result.stderr
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_missing_separator_model_fails_before_writing(tmp_path, two_speaker_wav, shared_dir):
    result = run_cli("split", str(two_speaker_wav), "-o", str(tmp_path / "out"),
                     "--diarization", str(shared_dir / "data" / "pyannote-sample" / "sample.rttm"),
                     "--separation-model", "speechbrain/sepformer-does-not-exist", "--overlap-fallback", "error",
                     "--separator", "sepformer")  # auto would fall back to the embedded separator
    assert_clean_failure(result, "separation model", "cannot be reached")
    assert not any((tmp_path / "out").iterdir())


def test_gated_and_unknown_models_are_explained():
    from huggingface_hub import errors

    from podsep.models.hub import describe_hub_error

    gated = errors.GatedRepoError.__new__(errors.GatedRepoError)
    Exception.__init__(gated, "403 Client Error: access to model is restricted hf_abcdefghijkl")
    message = describe_hub_error("diarization", "pyannote/x", gated)
    assert "gated" in message and "hf.co/pyannote/x" in message and "HF_TOKEN" in message
    missing = errors.RepositoryNotFoundError.__new__(errors.RepositoryNotFoundError)
    Exception.__init__(missing, "404")
    assert "not found" in describe_hub_error("separation", "me/none", missing)
    generic = RuntimeError("boom with hf_abcdefghijklmnop inside")
    assert "hf_abcdefghijklmnop" not in describe_hub_error("separation", "me/none", generic)


def test_existing_output_is_kept_without_overwrite(tmp_path, two_speaker_wav, shared_dir):
    rttm = str(shared_dir / "data" / "pyannote-sample" / "sample.rttm")
    folder = tmp_path / "out" / "sample"
    folder.mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me")
    result = run_cli("split", str(two_speaker_wav), "-o", str(tmp_path / "out"), "--diarization", rttm, "--overlap", "duplicate")
    assert_clean_failure(result, "already exists", "--overwrite")
    assert (folder / "precious.txt").read_text() == "keep me"
    result = run_cli("split", str(two_speaker_wav), "-o", str(tmp_path / "out"), "--diarization", rttm, "--overlap", "mute", "--overwrite", "-q", "--no-extras", "--no-background")
    assert result.returncode == 0 and result.stderr == ""
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".rttm", ".wav", ".wav"]


def test_bad_settings_and_devices_are_one_line(tmp_path, two_speaker_wav):
    assert_clean_failure(run_cli("split", str(two_speaker_wav), "--device", "tpu"), "unknown device")
    assert_clean_failure(run_cli("split", str(two_speaker_wav), "--min-speakers", "3", "--max-speakers", "2"), "min_speakers")
    config = tmp_path / "bad.yaml"
    config.write_text("assembly: [1, 2\n")
    assert_clean_failure(run_cli("split", str(two_speaker_wav), "--config", str(config)), "not valid YAML")


def test_batch_goes_on_after_a_bad_file(tmp_path, two_speaker_wav, shared_dir):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio" * 100)
    good = tmp_path / "good.wav"
    good.write_bytes(two_speaker_wav.read_bytes())
    result = run_cli("split", str(bad), str(good), "-o", str(tmp_path / "out"), "--diarizer", "embedded",
                     "--num-speakers", "2", "--overlap", "duplicate", "-q")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("podsep: error:")]
    assert len(errors) == 2 and "bad.wav" in errors[0] and "1 of 2 inputs failed" in errors[1]
    assert (tmp_path / "out" / "good" / "good.json").exists()
    assert not (tmp_path / "out" / "bad").exists()


def test_settings_object_and_keyword_overrides_combine(two_speaker_wav):
    from podsep.config import load_settings

    settings = load_settings(None, {"overlaps.policy": "mute"})
    result = podsep.split(two_speaker_wav, settings=settings, num_speakers=2,
                          diarization=podsep.Diarization.from_turns([(0, 10, "A"), (5, 20, "B")]))
    assert result.manifest["parameters"]["diarization"]["num_speakers"] == 2
    assert result.manifest["parameters"]["overlaps"]["policy"] == "mute"
    assert settings.diarization.num_speakers is None  # the caller's object is not changed
