"""Hostile and odd inputs through the real command line.

Each case builds an input (or an output location) of the kind a podcast tool meets
in the wild, runs ``python -m podsep split`` on it with the embedded diarizer, and
checks that podsep either works correctly or stops with one clear line and a
non-zero exit code, leaving nothing partial behind and losing nothing already
written.

Every run happens once, in the module fixture ``outcomes`` (two at a time: most of
a run is loading torch and the diarizer); the tests below assert on the outcomes.
The last test turns them into the table in README.md ("Hostile and odd inputs");
``PODSEP_UPDATE_README=1`` rewrites that table instead of comparing it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile

from podsep.audio import load_audio, resample
from podsep.diarization import Diarization

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
TABLE_START, TABLE_END = "<!-- hostile-inputs:start -->", "<!-- hostile-inputs:end -->"

RATE = 16000
SPEECH_SPAN = (6.0, 18.0)  # seconds of sample.wav where both of its speakers talk
FULL_DISK_BYTES = 100_000  # file-size limit of the "full disk" run: far below one 12 s track (384 kB)
PCM16_STEP = 1.0 / 32768  # tracks are 16-bit: one quantisation step of difference is allowed
EDGE = 0.1  # seconds kept clear of turn edges (crossfades) when comparing tracks with the input


# -- building inputs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sources:
    """Material the builders draw from: 12 s of a real two-person conversation, the shared folder."""

    speech: np.ndarray  # mono float32 at RATE
    shared: Path


def write_wav(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """``samples`` is mono ``(n,)`` or ``(n, channels)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def speech_wav(folder: Path, src: Sources) -> Path:
    return write_wav(folder / "speech.wav", src.speech, RATE)


def white_noise(folder: Path, src: Sources) -> Path:
    noise = 0.1 * np.random.default_rng(1).standard_normal(10 * RATE)
    return write_wav(folder / "noise.wav", noise.astype(np.float32), RATE)


def music(folder: Path, src: Sources) -> Path:
    """10 s of stereo chords (three notes with two overtones each) pulsing on a 2 Hz beat."""
    rate = 44100
    t = np.arange(10 * rate) / rate
    chord = sum(np.sin(2 * np.pi * note * k * t) / k for note in (220.0, 277.18, 329.63) for k in (1, 2, 3))
    beat = 0.4 + 0.6 * np.exp(-8.0 * (t % 0.5))
    left = 0.12 * chord * beat
    right = 0.12 * np.roll(chord, 300) * beat
    return write_wav(folder / "music.wav", np.stack([left, right], axis=1).astype(np.float32), rate)


def clipped_with_dc(folder: Path, src: Sources) -> Path:
    """Speech driven 18 dB into clipping, on top of a +0.2 DC offset."""
    return write_wav(folder / "clipped.wav", np.clip(8.0 * src.speech + 0.2, -1.0, 1.0), RATE)


def telephone(folder: Path, src: Sources) -> Path:
    """8 kHz μ-law, band-limited to 300–3400 Hz like a phone line."""
    from scipy.signal import butter, sosfilt

    narrow = resample(src.speech, RATE, 8000)
    narrow = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
    return write_wav(folder / "phone call.wav", narrow.astype(np.float32), 8000, subtype="ULAW")


def hi_res(folder: Path, src: Sources) -> Path:
    return write_wav(folder / "studio.wav", resample(src.speech, RATE, 96000), 96000, subtype="PCM_24")


def six_channels(folder: Path, src: Sources) -> Path:
    """48 kHz 5.1: the speech at a different level in each channel."""
    speech = resample(src.speech, RATE, 48000)
    gains = (1.0, 0.8, 0.6, 0.1, 0.5, 0.3)
    return write_wav(folder / "surround.wav", np.stack([g * speech for g in gains], axis=1), 48000)


def video(folder: Path, src: Sources) -> Path:
    """An MP4 with a test-pattern video track and the speech as AAC audio."""
    audio = speech_wav(folder / "parts", src)
    target = folder / "interview.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-i", str(audio), "-shortest",
           "-c:v", "mpeg4", "-c:a", "aac", str(target))
    return target


def video_without_audio(folder: Path, src: Sources) -> Path:
    target = folder / "screen recording.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=3", "-c:v", "mpeg4", str(target))
    return target


def truncated_wav(folder: Path, src: Sources) -> Path:
    """The first half of a WAV file: the header still promises 12 s."""
    whole = speech_wav(folder / "parts", src).read_bytes()
    target = folder / "cut.wav"
    target.write_bytes(whole[: len(whole) // 2])
    return target


def truncated_mp3(folder: Path, src: Sources) -> Path:
    audio = speech_wav(folder / "parts", src)
    whole = folder / "parts" / "speech.mp3"
    ffmpeg("-i", str(audio), "-c:a", "libmp3lame", "-b:a", "64k", str(whole))
    data = whole.read_bytes()
    target = folder / "cut.mp3"
    target.write_bytes(data[: len(data) // 2])
    return target


def random_bytes(folder: Path, src: Sources) -> Path:
    target = folder / "episode.wav"
    target.write_bytes(np.random.default_rng(2).bytes(64 * 1024))
    return target


def zero_bytes(folder: Path, src: Sources) -> Path:
    target = folder / "episode.mp3"
    target.write_bytes(b"")
    return target


def header_only(folder: Path, src: Sources) -> Path:
    return write_wav(folder / "header.wav", np.zeros(0, np.float32), RATE)


def nan_samples(folder: Path, src: Sources) -> Path:
    samples = src.speech.copy()
    samples[RATE:RATE + 10] = np.nan
    samples[2 * RATE] = np.inf
    return write_wav(folder / "broken float.wav", samples, RATE, subtype="FLOAT")


def silence(folder: Path, src: Sources) -> Path:
    return write_wav(folder / "silence.wav", np.zeros(10 * RATE, np.float32), RATE)


def ami_empty(folder: Path, src: Sources) -> Path:
    return src.shared / "data" / "ami" / "empty.wav"  # read in place


def non_ascii_path(folder: Path, src: Sources) -> Path:
    """AMI's ``trñ00.wav`` (first 15 s) under a name and folder with spaces and non-ASCII letters."""
    original = src.shared / "data" / "ami" / "trñ00.wav"
    samples, rate = soundfile.read(str(original), dtype="float32", frames=15 * RATE)
    subtype = soundfile.info(str(original)).subtype
    return write_wav(folder / "My Podcast – Zoë" / f"{original.stem} (copy).wav", samples, rate, subtype)


def a_directory(folder: Path, src: Sources) -> Path:
    target = folder / "episode.wav"
    target.mkdir()
    return target


def missing(folder: Path, src: Sources) -> Path:
    return folder / "no such episode.wav"


def single_speaker(folder: Path, src: Sources) -> Path:
    """15 s of one LibriSpeech reader."""
    reader = src.shared / "data" / "librispeech" / "test-other" / "1688"
    parts = [soundfile.read(str(p), dtype="float32")[0] for p in sorted(reader.glob("*.flac"))[:3]]
    return write_wav(folder / "monologue.wav", np.concatenate(parts)[: 15 * RATE], RATE)


def three_speakers(folder: Path, src: Sources) -> Path:
    """A generated 20 s conversation of three LibriSpeech readers."""
    from podsep.lab.synth import ConversationSpec, generate_conversation

    spec = ConversationSpec(num_speakers=3, duration=20.0, overlap_ratio=0.1)
    conversation = generate_conversation(src.shared / "data" / "librispeech" / "test-other", spec, seed=3)
    assert len(conversation.diarization.speakers) == 3
    return write_wav(folder / "panel.wav", conversation.mixture, conversation.sample_rate)


# -- output locations ----------------------------------------------------------------------------

def earlier_result(out: Path, stem: str = "speech") -> None:
    """What an earlier run left: a result folder for ``stem``, and a file of the user's."""
    folder = out / stem
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    write_wav(folder / f"{stem}.SPEAKER_00.wav", tone.astype(np.float32), RATE)
    write_wav(folder / f"{stem}.SPEAKER_01.wav", (0.5 * tone).astype(np.float32), RATE)
    (folder / f"{stem}.rttm").write_text(f"SPEAKER {stem} 1 0.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n")
    (folder / f"{stem}.json").write_text(json.dumps({"earlier": True}) + "\n")
    (out / "notes.txt").write_text("my show notes\n")


def output_is_a_file(out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("not a folder\n")


# -- the cases -----------------------------------------------------------------------------------

WORKS, FAILS = "works", "fails"
TWO = ("--num-speakers", "2")  # inputs made from the two-person conversation


@dataclass(frozen=True)
class Case:
    id: str
    label: str  # the "input" column of the README table
    build: Callable[[Path, Sources], Path]  # (folder, sources) -> the input path
    expect: str = WORKS
    args: tuple[str, ...] = ()
    tracks: tuple[int, int] = (1, 8)  # bounds on the number of tracks, when it works
    message: str = ""  # in the error line, when it fails
    output: str = "out"  # name of the -o folder inside the case folder
    prepare: Callable[[Path], None] | None = None  # fills the -o location before the run
    sandbox: str | None = None  # "read-only" or "full-disk": run restricted, after the others
    note: str = ""  # appended to the README row (e.g. a known issue)


CASES = [
    Case("reference", "12 s of a two-person conversation, 16 kHz mono WAV (the reference)", speech_wav,
         args=TWO, tracks=(2, 2)),
    Case("truncated-wav", "WAV cut in half (the header still promises 12 s)", truncated_wav, args=TWO, tracks=(2, 2)),
    Case("truncated-mp3", "MP3 cut in half mid-frame", truncated_mp3, args=TWO, tracks=(2, 2)),
    Case("random-bytes", "64 kB of random bytes named `.wav`", random_bytes, FAILS, message="cannot read"),
    Case("nan-samples", "float WAV with NaN and infinite samples", nan_samples, FAILS, message="NaN or infinite"),
    Case("zero-bytes", "zero-length file (0 bytes)", zero_bytes, FAILS, message="empty file (0 bytes)"),
    Case("header-only", "WAV with a header and no samples", header_only, FAILS, message="no audio samples"),
    Case("silence", "10 s of digital silence", silence, FAILS, message="input is silent"),
    Case("ami-empty", "`../shared/data/ami/empty.wav` (1 s, no speech)", ami_empty, FAILS, message="no speech found"),
    Case("white-noise", "10 s of white noise", white_noise, FAILS, message="no speech found"),
    Case("music", "10 s of music (chords on a beat), 44.1 kHz stereo", music, FAILS, message="no speech found"),
    Case("clipping-dc", "speech clipped hard (+18 dB) with a +0.2 DC offset", clipped_with_dc, args=TWO, tracks=(2, 2)),
    Case("telephone-8k", "8 kHz μ-law telephone audio (300–3400 Hz)", telephone, args=TWO, tracks=(2, 2)),
    Case("hi-res-96k", "96 kHz 24-bit WAV", hi_res, args=TWO, tracks=(2, 2)),
    Case("six-channels", "6-channel (5.1) 48 kHz WAV", six_channels, args=TWO, tracks=(2, 2)),
    Case("video", "MP4 video (MPEG-4 video + AAC audio)", video, args=TWO, tracks=(2, 2)),
    Case("video-no-audio", "MP4 video without an audio track", video_without_audio, FAILS, message="no audio stream"),
    Case("non-ascii-path", "AMI `trñ00.wav` (15 s) as `My Podcast – Zoë/trñ00 (copy).wav`, "
         "written to `out – Zoë’s tracks/`", non_ascii_path, output="out – Zoë’s tracks", tracks=(1, 4)),
    Case("directory", "a directory instead of a file", a_directory, FAILS, message="is a directory"),
    Case("missing", "a path that does not exist", missing, FAILS, message="input not found"),
    Case("output-is-a-file", "`-o` names an existing file", speech_wav, FAILS, args=TWO,
         message="cannot create output folder", prepare=output_is_a_file),
    Case("existing-result", "result folder already there, no `--overwrite`", speech_wav, FAILS, args=TWO,
         message="already exists", prepare=earlier_result),
    Case("read-only-output", "read-only output folder holding an earlier result, `--overwrite`", speech_wav, FAILS,
         args=(*TWO, "--overwrite"), message="not writable", prepare=earlier_result, sandbox="read-only"),
    Case("full-disk", "output disk full while writing tracks, `--overwrite` of an earlier result "
         "(simulated: file-size limit)", speech_wav, FAILS, args=(*TWO, "--overwrite"),
         message="File too large", prepare=earlier_result, sandbox="full-disk"),
    Case("single-speaker", "15 s of a single speaker (LibriSpeech)", single_speaker, tracks=(1, 1)),
    Case("over-max-speakers", "3-speaker conversation (20 s) with `--max-speakers 2`", three_speakers,
         args=("--max-speakers", "2"), tracks=(1, 2)),
]
CASE_BY_ID = {case.id: case for case in CASES}


# -- running -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    case: Case
    folder: Path  # everything of this case lives here
    input: Path
    out: Path  # the -o location
    tmp: Path  # TMPDIR of the run
    before: dict[str, str]  # snapshot of the -o location before the run
    after: dict[str, str] = field(default_factory=dict)
    result: subprocess.CompletedProcess | None = None
    skipped: str = ""


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (files) or "dir" (folders), everything under ``root``."""
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in root.rglob("*")
    }


def drop_file_capabilities() -> None:
    """Make root obey permission bits (for the read-only run): drop the DAC overrides.

    Removing them from the bounding set means the exec'd interpreter never gets
    them back. (Switching to an unprivileged user instead would lose access to an
    interpreter installed under /root.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def limit_file_size() -> None:
    """A full disk, simulated: writes past FULL_DISK_BYTES fail with EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES))


def child_env(outcome: Outcome, cache: Path) -> dict[str, str]:
    # One torch thread per run: two runs share the cores, and on a busy machine
    # multi-threaded torch spends most of its time spinning (3x slower here).
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", PODSEP_CACHE=str(cache),
                TMPDIR=str(outcome.tmp), PODSEP_DEBUG="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def command(outcome: Outcome) -> list[str]:
    return [sys.executable, "-m", "podsep", "split", str(outcome.input), "-o", str(outcome.out),
            "--diarizer", "embedded", "--overlap", "duplicate", "--device", "cpu", "--no-extras", *outcome.case.args]


def run_case(outcome: Outcome, cache: Path) -> None:
    preexec = None
    if outcome.case.sandbox == "full-disk":
        preexec = limit_file_size
    elif outcome.case.sandbox == "read-only":
        outcome.out.chmod(0o555)
        if os.geteuid() == 0:
            preexec = drop_file_capabilities
            probe = [sys.executable, "-c", "import os, sys; sys.exit(3 if os.access(sys.argv[1], os.W_OK) else 0)",
                     str(outcome.out)]
            try:
                if subprocess.run(probe, preexec_fn=preexec).returncode != 0:
                    outcome.skipped = "root still writes into a 0o555 folder here"
            except (OSError, subprocess.SubprocessError) as error:
                outcome.skipped = f"cannot drop root's file capabilities: {error}"
    try:
        if not outcome.skipped:
            outcome.result = subprocess.run(command(outcome), capture_output=True, text=True, timeout=600,
                                            env=child_env(outcome, cache), preexec_fn=preexec)
    finally:
        if outcome.case.sandbox == "read-only":
            outcome.out.chmod(0o755)
    outcome.after = snapshot(outcome.out)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, shared_dir) -> dict[str, Outcome]:
    """Build every input and run podsep on each: the ordinary ones two at a time, the
    sandboxed ones (which need ``preexec_fn``, unsafe beside threads) one by one after.

    The diarization cache is shared, so the full-disk run reuses the reference's.
    """
    speech, rate = soundfile.read(str(shared_dir / "data" / "pyannote-sample" / "sample.wav"), dtype="float32")
    assert rate == RATE
    sources = Sources(speech[int(SPEECH_SPAN[0] * RATE):int(SPEECH_SPAN[1] * RATE)], shared_dir)
    root = tmp_path_factory.mktemp("hostile")
    cache = root / "cache"
    results = {}
    for case in CASES:
        folder = root / case.id
        (folder / "tmp").mkdir(parents=True)
        out = folder / case.output
        if case.prepare is not None:
            case.prepare(out)
        results[case.id] = Outcome(case, folder, case.build(folder, sources), out, folder / "tmp", snapshot(out))
    ordinary = [o for o in results.values() if o.case.sandbox is None]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda outcome: run_case(outcome, cache), ordinary))
    for outcome in results.values():
        if outcome.case.sandbox is not None:
            run_case(outcome, cache)
    return results


def outcome_of(outcomes: dict[str, Outcome], case_id: str) -> Outcome:
    outcome = outcomes[case_id]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.result is not None
    return outcome


# -- checking ------------------------------------------------------------------------------------

def error_lines(stderr: str) -> list[str]:
    """stderr without the plain progress lines (they start with '[' or spaces)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("[", " "))]


def assert_no_decode_leftovers(outcome: Outcome) -> None:
    assert not list(outcome.tmp.glob("podsep-decode-*")), "ffmpeg's temporary decode was left behind"


def result_folder(outcome: Outcome) -> Path:
    """The one folder the run added to the output location."""
    added = sorted({Path(p).parts[0] for p in outcome.after} - {Path(p).parts[0] for p in outcome.before})
    assert len(added) == 1, f"expected one new result folder, found {added}"
    return outcome.out / added[0]


def check_works(outcome: Outcome) -> None:
    case, result = outcome.case, outcome.result
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not [line for line in error_lines(result.stderr) if line.startswith("podsep:")], result.stderr
    assert_no_decode_leftovers(outcome)
    for path, digest in outcome.before.items():  # nothing that was there is touched
        assert outcome.after.get(path) == digest, path
    assert not [p for p in outcome.after if any(part.startswith(".") for part in Path(p).parts)], \
        f"hidden staging files left: {sorted(outcome.after)}"

    folder = result_folder(outcome)
    (manifest_path,) = folder.glob("*.json")
    (rttm_path,) = folder.glob("*.rttm")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    speakers = [s["name"] for s in manifest["speakers"]]
    low, high = case.tracks
    assert low <= len(speakers) <= high, f"{len(speakers)} tracks for {case.label}"
    tracks = {s: folder / manifest["files"][f"track:{s}"] for s in speakers}
    assert sorted(p.name for p in folder.iterdir()) == sorted([manifest_path.name, rttm_path.name]
                                                               + [p.name for p in tracks.values()])
    diarization = Diarization.from_rttm(rttm_path)
    assert set(diarization.speakers) == set(speakers)

    original = load_audio(outcome.input)
    assert manifest["input"]["sample_rate"] == original.sample_rate
    assert manifest["input"]["channels"] == original.num_channels
    assert manifest["input"]["num_samples"] == original.num_frames
    rate = original.sample_rate
    margin = np.ones(2 * int(EDGE * rate) + 1, dtype=bool)
    from scipy.ndimage import binary_dilation, binary_erosion

    for speaker, path in tracks.items():
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (rate, original.num_channels, original.num_frames)
        track = soundfile.read(str(path), dtype="float32", always_2d=True)[0].T
        assert np.all(np.isfinite(track))
        # with --overlap duplicate a track is the input wherever its speaker talks, silence elsewhere
        active = np.zeros(original.num_frames, dtype=bool)
        for turn in diarization.turns:
            if turn.speaker == speaker:
                active[int(turn.start * rate):int(np.ceil(turn.end * rate))] = True
        inside, outside = binary_erosion(active, margin), ~binary_dilation(active, margin)
        assert inside.any(), f"{speaker} never talks clear of a turn edge"
        difference = np.abs(track[:, inside] - original.samples[:, inside]).max()
        assert difference <= PCM16_STEP * 1.001, f"{speaker}'s track differs from the input by {difference}"
        assert not np.any(track[:, outside]), f"{speaker}'s track is not silent where they do not talk"


def check_stops_cleanly(outcome: Outcome) -> str:
    """Non-zero exit, one ``podsep: error:`` line, no traceback, nothing written or lost; returns the line."""
    result = outcome.result
    assert result.returncode != 0, "expected podsep to refuse this input"
    assert "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("podsep: error: "), lines[0]
    assert outcome.case.message in lines[0], lines[0]
    assert outcome.after == outcome.before, "the output location changed although podsep failed"
    assert_no_decode_leftovers(outcome)
    return lines[0]


# -- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.expect == WORKS])
def test_odd_input_works_correctly(outcomes, case_id):
    check_works(outcome_of(outcomes, case_id))


@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.expect == FAILS])
def test_bad_input_or_output_stops_cleanly(outcomes, case_id):
    check_stops_cleanly(outcome_of(outcomes, case_id))


def test_truncated_files_keep_what_is_there(outcomes):
    """A cut file is read up to where it stops: about half of the 12 s, not the length its header claims."""
    for case_id in ("truncated-wav", "truncated-mp3"):
        outcome = outcome_of(outcomes, case_id)
        duration = load_audio(outcome.input).duration
        assert 4.0 < duration < 8.0, (case_id, duration)


@pytest.mark.parametrize("case_id", ["existing-result", "read-only-output", "full-disk"])
def test_nothing_already_written_is_lost(outcomes, case_id):
    outcome = outcome_of(outcomes, case_id)
    assert outcome.result.returncode != 0
    assert "speech/speech.SPEAKER_00.wav" in outcome.before and "notes.txt" in outcome.before
    assert outcome.after == outcome.before  # byte for byte, and no partial file or folder beside them


def test_full_disk_names_the_track_and_the_reason(outcomes):
    outcome = outcome_of(outcomes, "full-disk")
    line = check_stops_cleanly(outcome)
    # the track's final name (not the hidden staging folder) and the OS's reason
    assert str(outcome.out / "speech" / "speech.SPEAKER_00.wav") in line and "partial" not in line, line


def test_more_speakers_than_max_speakers_gives_at_most_that_many_tracks(outcomes):
    outcome = outcome_of(outcomes, "over-max-speakers")
    check_works(outcome)
    manifest = json.loads(next(result_folder(outcome).glob("*.json")).read_text())
    assert manifest["parameters"]["diarization"]["max_speakers"] == 2
    assert 1 <= len(manifest["speakers"]) <= 2


def test_single_speaker_gives_exactly_one_track(outcomes):
    outcome = outcome_of(outcomes, "single-speaker")
    check_works(outcome)
    manifest = json.loads(next(result_folder(outcome).glob("*.json")).read_text())
    assert len(manifest["speakers"]) == 1


# -- the README table (keep this test last) ---------------------------------------------------------

def describe(outcome: Outcome, shared: Path) -> str:
    """What podsep did, without temporary paths or timings."""
    result = outcome.result
    if result.returncode == 0:
        manifest = json.loads(next(result_folder(outcome).glob("*.json")).read_text())
        source, count = manifest["input"], len(manifest["speakers"])
        return (f"works: {count} track{'s' if count != 1 else ''}, {source['duration']:.1f} s, "
                f"{source['sample_rate']} Hz, {source['channels']} ch")
    lines = error_lines(result.stderr)
    text = lines[-1] if lines else f"exit {result.returncode} without a message"
    text = text.removeprefix("podsep: ")
    for prefix, replacement in ((str(outcome.folder) + os.sep, ""), (str(shared), "../shared")):
        text = text.replace(prefix, replacement)
    return text


def markdown_table(rows: list[tuple[str, str, int]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| input | what podsep does | exit code |", "|---|---|---|"]
    lines += [f"| {cell(label)} | {cell(what)} | {code} |" for label, what, code in rows]
    return "\n".join(lines)


def test_readme_table_lists_every_case(outcomes, shared_dir):
    skipped = [o.case.id for o in outcomes.values() if o.skipped]
    if skipped:
        pytest.skip(f"not every case could run here: {', '.join(skipped)}")
    rows = [(case.label, describe(outcomes[case.id], shared_dir) + (f" ({case.note})" if case.note else ""),
             outcomes[case.id].result.returncode) for case in CASES]
    table = markdown_table(rows)
    text = README.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text, "README.md lacks the hostile-inputs markers"
    head, rest = text.split(TABLE_START, 1)
    current, tail = rest.split(TABLE_END, 1)
    if os.environ.get("PODSEP_UPDATE_README") == "1":
        README.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}", encoding="utf-8")
        return
    assert current.strip() == table, ("README.md's hostile-inputs table is out of date; "
                                      "rerun with PODSEP_UPDATE_README=1:\n" + table)
