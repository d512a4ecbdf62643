"""Audio in and out: decode anything ffmpeg reads, write WAV/FLAC/MP3 atomically.

The original recording is kept at its own sample rate and channel count, because
the per-speaker tracks must line up sample for sample with it. A separate mono
16 kHz *analysis copy* feeds the models. Writes go to a temporary name in the
destination folder and are renamed into place, so an interrupted run never leaves
a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError

ANALYSIS_RATE = 16000

# Formats soundfile (libsndfile) decodes exactly and fast; everything else goes through ffmpeg.
_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}

WAV_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
OUTPUT_FORMATS = ("wav", "flac", "mp3")


@dataclass
class Audio:
    """Decoded audio: ``samples`` is float32 ``(channels, frames)`` at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def num_channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate

    @classmethod
    def from_array(cls, waveform: np.ndarray, sample_rate: int) -> "Audio":
        """Wrap an in-memory waveform: 1-D mono, or ``(channels, frames)``."""
        array = np.asarray(waveform)
        if hasattr(waveform, "detach"):  # a torch tensor
            array = waveform.detach().cpu().numpy()
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[0] > 64:
            raise InputError(
                f"waveform must be 1-D or (channels, frames), got shape {tuple(array.shape)}"
            )
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise InputError(f"sample rate must be a positive integer, got {sample_rate!r}")
        array = array.astype(np.float32, copy=False)
        if not np.all(np.isfinite(array)):
            raise InputError("waveform contains NaN or infinite values")
        return cls(np.ascontiguousarray(array), int(sample_rate))

    def mono(self) -> np.ndarray:
        """Mean over channels, float32 ``(frames,)``."""
        if self.num_channels == 1:
            return self.samples[0]
        return self.samples.mean(axis=0, dtype=np.float64).astype(np.float32)


def ffmpeg_binary(name: str = "ffmpeg") -> str:
    """Path of ffmpeg/ffprobe, or a clear error saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise InputError(
            f"{name} not found: install FFmpeg (e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg') to read this format"
        )
    return found


def check_input_path(path: str | os.PathLike[str]) -> Path:
    """Fail early, in one line, on a missing path, a directory or an unreadable file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not an audio file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"input is not readable (permissions): {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is an empty file (0 bytes): {path}")
    return path


def load_audio(path: str | os.PathLike[str]) -> Audio:
    """Decode a file at its own sample rate and channel count.

    WAV/FLAC/OGG are read with libsndfile; any other container (mp3, m4a/aac,
    opus, video files) is decoded by ffmpeg, first audio stream only.
    """
    path = check_input_path(path)
    audio: Audio | None = None
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        audio = _load_with_soundfile(path)
    if audio is None:
        audio = _load_with_ffmpeg(path)
    if audio.num_frames == 0:
        raise InputError(f"input has no audio samples: {path}")
    if not np.all(np.isfinite(audio.samples)):
        raise InputError(f"input decodes to NaN or infinite samples: {path}")
    return audio


def _load_with_soundfile(path: Path) -> Audio | None:
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # unusual subtypes, truncated headers: let ffmpeg try, it says why
        return None
    return Audio(np.ascontiguousarray(data.T), int(rate))


def probe(path: Path) -> dict:
    """Sample rate, channels and codec of the first audio stream, via ffprobe."""
    command = [
        ffmpeg_binary("ffprobe"), "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels,codec_name:format=duration",
        "-of", "json", "--", str(path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputError(f"cannot read {path}: {_first_line(result.stderr) or 'ffprobe failed'}")
    try:
        info = json.loads(result.stdout or "{}")
    except json.JSONDecodeError as error:
        raise InputError(f"cannot read {path}: unexpected ffprobe output") from error
    streams = info.get("streams") or []
    if not streams:
        raise InputError(f"no audio stream in {path}")
    stream = streams[0]
    try:
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (KeyError, ValueError) as error:
        raise InputError(f"cannot read {path}: audio stream has no sample rate/channels") from error
    if rate <= 0 or channels <= 0:
        raise InputError(f"cannot read {path}: invalid audio stream ({rate} Hz, {channels} channels)")
    return {"sample_rate": rate, "channels": channels, "codec": stream.get("codec_name")}


def _load_with_ffmpeg(path: Path) -> Audio:
    info = probe(path)
    command = [
        ffmpeg_binary(), "-nostdin", "-v", "error", "-i", str(path),
        "-map", "0:a:0", "-vn", "-f", "f32le", "-acodec", "pcm_f32le",
        "-ac", str(info["channels"]), "-ar", str(info["sample_rate"]), "-",
    ]
    # "-i" takes the path as a separate argument: no shell, no injection.
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = _first_line(result.stderr.decode("utf-8", "replace")) or "ffmpeg failed"
        raise InputError(f"cannot decode {path}: {message}")
    flat = np.frombuffer(result.stdout, dtype="<f4")
    channels = info["channels"]
    usable = (flat.size // channels) * channels
    samples = flat[:usable].reshape(-1, channels).T
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), info["sample_rate"])


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling along the last axis (polyphase, exact rational ratio)."""
    if from_rate == to_rate:
        return np.asarray(signal, dtype=np.float32)
    from scipy.signal import resample_poly

    divisor = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // divisor, int(from_rate) // divisor
    out = resample_poly(np.asarray(signal, dtype=np.float32), up, down, axis=-1)
    expected = int(round(signal.shape[-1] * to_rate / from_rate))
    if out.shape[-1] > expected:
        out = out[..., :expected]
    elif out.shape[-1] < expected:
        pad = [(0, 0)] * (out.ndim - 1) + [(0, expected - out.shape[-1])]
        out = np.pad(out, pad)
    return out.astype(np.float32, copy=False)


def analysis_copy(audio: Audio, rate: int = ANALYSIS_RATE) -> np.ndarray:
    """Mono float32 copy at the models' rate (16 kHz)."""
    return resample(audio.mono(), audio.sample_rate, rate)


# -- writing ------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_destination(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place on success.

    On any error (or Ctrl-C) the temporary file is removed and ``final_path`` is
    untouched, so no half-written file ever carries a final name.
    """
    final_path = Path(final_path)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{final_path.stem[:40]}.", suffix=f".partial{final_path.suffix}", dir=final_path.parent
    )
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, 0o666 & ~current_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(temporary_path, final_path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary_path.unlink()
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, *, fmt: str = "wav", bit_depth: str = "16") -> bool:
    """Write ``(channels, frames)`` float audio atomically; return True if it had to clip.

    WAV takes 16/24-bit PCM or 32-bit float; FLAC 16/24-bit; MP3 goes through
    ffmpeg (via pydub) at 192 kbit/s.
    """
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    clipped = bool(np.any(np.abs(samples) > 1.0)) and not (fmt == "wav" and bit_depth == "float")
    if clipped:
        samples = np.clip(samples, -1.0, 1.0)
    try:
        with atomic_destination(path) as temporary:
            if fmt in ("wav", "flac"):
                import soundfile

                subtype = WAV_SUBTYPES.get(bit_depth)
                if subtype is None or (fmt == "flac" and bit_depth == "float"):
                    raise OutputError(f"unsupported bit depth '{bit_depth}' for {fmt}")
                soundfile.write(str(temporary), samples.T, sample_rate, subtype=subtype, format=fmt.upper())
            elif fmt == "mp3":
                _write_mp3(temporary, samples, sample_rate)
            else:
                raise OutputError(f"unsupported output format '{fmt}' (choose from {', '.join(OUTPUT_FORMATS)})")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    return clipped


def _write_mp3(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    from pydub import AudioSegment

    ffmpeg_binary()
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    segment = AudioSegment(
        data=pcm.T.tobytes(), sample_width=2, frame_rate=sample_rate, channels=samples.shape[0]
    )
    segment.export(str(path), format="mp3", bitrate="192k")
