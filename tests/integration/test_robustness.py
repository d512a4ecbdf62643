"""Device trouble, interruption, concurrent runs and reruns: nothing lost, nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import podsep
from podsep.audio import write_audio
from podsep.cli.progress import STAGE_TITLES
from podsep.models.separation import iter_separated


class FlakyGpuSeparator:
    """Runs out of GPU memory on batches, and on single windows while on 'cuda'."""

    def __init__(self) -> None:
        self.device = "cuda"
        self.calls: list[tuple[str, int]] = []

    def move_to(self, device: str) -> None:
        self.device = device

    def separate_batch(self, mixtures, rate):
        self.calls.append(("batch", len(mixtures)))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def __call__(self, window, rate):
        self.calls.append((self.device, 1))
        if self.device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return np.stack([window, 0.5 * window])


def test_out_of_memory_retries_smaller_then_on_cpu():
    separator = FlakyGpuSeparator()
    warnings: list[str] = []
    windows = [np.random.default_rng(i).standard_normal(1000).astype(np.float32) for i in range(4)]
    results = dict(iter_separated(separator, lambda i: windows[i], [1000] * 4, 16000, batch_size=4, warn=warnings.append))
    assert sorted(results) == [0, 1, 2, 3] and all(r.shape == (2, 1000) for r in results.values())
    assert separator.calls[0] == ("batch", 4) and separator.device == "cpu"
    assert any("one at a time" in w for w in warnings) and any("on the CPU" in w for w in warnings)


def test_out_of_memory_without_fallback_is_a_clear_error():
    class AlwaysOom:
        def __call__(self, window, rate):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(podsep.PodsepError, match="out of memory during separation"):
        list(iter_separated(AlwaysOom(), lambda i: np.ones(10, np.float32), [10], 16000))


def test_unavailable_device_is_a_clear_error(two_speaker_wav):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists here; the error path needs a machine without one (CI has none)")
    with pytest.raises(podsep.PodsepError, match="no CUDA device"):
        podsep.split(two_speaker_wav, device="cuda", diarization=podsep.Diarization.from_turns([(0, 1, "A")]))


def _long_speech_mp3(folder: Path, shared_dir: Path, minutes: float) -> Path:
    """A few minutes of real two-person speech, as MP3 (so a temporary decode exists)."""
    import soundfile

    sample, rate = soundfile.read(str(shared_dir / "data" / "pyannote-sample" / "sample.wav"), dtype="float32")
    repeats = int(np.ceil(minutes * 60 / (len(sample) / rate)))
    wav = folder / "long input.wav"
    write_audio(wav, np.tile(sample, repeats)[None, :], rate)
    mp3 = folder / "long input.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-q:a", "5", str(mp3)], check=True)
    wav.unlink()
    return mp3


def _decode_leftovers() -> set[str]:
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("podsep-decode-*")}


def test_ctrl_c_leaves_no_partial_output(tmp_path, shared_dir):
    source = _long_speech_mp3(tmp_path, shared_dir, minutes=6)
    before = _decode_leftovers()
    out = tmp_path / "out"
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PODSEP_CACHE=str(tmp_path / "cache"))
    process = subprocess.Popen([sys.executable, "-m", "podsep", "split", str(source), "-o", str(out), "--diarizer",
                                "embedded", "--overlap", "duplicate"], stderr=subprocess.PIPE, text=True, env=environment)
    # Interrupt once the run is under way (decoded, diarizing), whatever the machine's speed:
    # a fixed delay let a fast machine finish first.
    seen = []
    for line in process.stderr:
        seen.append(line)
        if STAGE_TITLES["diarization"] in line:
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=300)
    stderr = "".join(seen) + rest
    if process.returncode == 0:
        pytest.fail("the run finished before it could be interrupted; make the input longer")
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr.strip().splitlines()[-1] and "Traceback" not in stderr
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    assert _decode_leftovers() <= before


def test_interrupt_inside_an_extension_still_exits_130(tmp_path):
    """A Ctrl-C that crossed a C extension's nested interpreter call keeps the promised status.

    CPython remembers such an interrupt in a flag Python cannot clear and, under ``-m``,
    ends the process by SIGINT (-2) whatever status the handler returned; this happened
    once in the suite when the interrupt landed while a library was being imported.
    """
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes\n"
        "import podsep.audio\n"
        "def interrupted_inside_an_extension(path):\n"
        "    ctypes.pythonapi.PyRun_SimpleString(b'raise KeyboardInterrupt')  # sets the flag\n"
        "    raise KeyboardInterrupt\n"
        "podsep.audio.check_input_path = interrupted_inside_an_extension\n")
    # no empty entry when PYTHONPATH is unset: that would put the working directory on sys.path
    search_path = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(search_path))
    process = subprocess.run([sys.executable, "-m", "podsep", "split", "anything.wav"], capture_output=True,
                             text=True, env=environment, timeout=300)
    assert "interrupted" in process.stderr.strip().splitlines()[-1], process.stderr
    assert process.returncode == 130, process.stderr


def test_rerun_reuses_the_cached_diarization(tmp_path, two_speaker_wav):
    overrides = {"diarization.backend": "embedded", "overlaps.policy": "duplicate"}
    first = podsep.split(two_speaker_wav, overrides=overrides, output_dir=tmp_path / "a")
    second = podsep.split(two_speaker_wav, overrides=overrides, output_dir=tmp_path / "b")
    assert first.manifest["diarization_cache"] == "stored"
    assert second.manifest["diarization_cache"] == "reused"
    assert second.diarization.turns == first.diarization.turns
    assert second.manifest["timings"]["diarization"] < first.manifest["timings"]["diarization"]
    changed = podsep.split(two_speaker_wav, overrides=overrides, num_speakers=3, output_dir=tmp_path / "c")
    assert changed.manifest["diarization_cache"] == "stored"  # other settings, other key


def test_concurrent_runs_into_one_folder(tmp_path, shared_dir, two_speaker_wav):
    rttm = shared_dir / "data" / "pyannote-sample" / "sample.rttm"
    other = tmp_path / "second.wav"
    other.write_bytes(two_speaker_wav.read_bytes())
    out = tmp_path / "out"
    environment = dict(os.environ, HF_HUB_OFFLINE="1")

    def start(path: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "podsep", "split", str(path), "-o", str(out), "--diarization",
                                 f"{rttm}:sample", "--overlap", "duplicate", "-q"], stderr=subprocess.PIPE, text=True,
                                env=environment)

    runs = [start(two_speaker_wav), start(other), start(two_speaker_wav)]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert outcomes[1][0] == 0, outcomes[1][1]
    same = [outcomes[0], outcomes[2]]
    assert sorted(code == 0 for code, _ in same) == [False, True], same  # one wins, one is refused cleanly
    refused = [err for code, err in same if code != 0][0]
    assert refused.startswith("podsep: error:") and refused.count("\n") == 1
    for stem in ("sample", "second"):
        names = sorted(p.name for p in (out / stem).iterdir())
        assert f"{stem}.json" in names and f"{stem}.rttm" in names and sum(n.endswith(".wav") for n in names) == 2
    assert sorted(p.name for p in out.iterdir()) == ["sample", "second"], "staging folders left behind"
