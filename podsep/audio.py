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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError

ANALYSIS_RATE = 16000

# Formats soundfile (libsndfile) decodes exactly and fast; everything else goes through ffmpeg.
_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
# PCM containers that libsndfile seeks in exactly: read in place, block by block.
_SEEKABLE_SUFFIXES = {".wav", ".flac", ".aiff", ".aif"}

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

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as ``(channels, n)`` (the same interface as :class:`FileAudio`)."""
        return self.samples[:, max(start, 0):max(stop, 0)]

    def close(self) -> None:
        """Nothing to release (in-memory)."""


class FileAudio:
    """A seekable PCM file read in blocks, so long recordings are never held whole.

    ``temporary`` files (ffmpeg's decode of a compressed input) are deleted by
    :meth:`close`.
    """

    def __init__(self, path: Path, *, temporary: bool = False, label: str | None = None) -> None:
        import soundfile

        self.path = Path(path)
        self.temporary = temporary
        self.label = label or str(path)
        self._file = soundfile.SoundFile(str(self.path))
        self.sample_rate = int(self._file.samplerate)
        self.num_channels = int(self._file.channels)
        self.num_frames = int(self._file.frames)

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(self.num_frames, stop)
        if stop <= start:
            return np.zeros((self.num_channels, 0), dtype=np.float32)
        self._file.seek(start)
        block = self._file.read(stop - start, dtype="float32", always_2d=True)
        return np.ascontiguousarray(block.T)

    def close(self) -> None:
        self._file.close()
        if self.temporary:
            with contextlib.suppress(OSError):
                self.path.unlink()
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()

    def __enter__(self) -> "FileAudio":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_audio(path: str | os.PathLike[str]) -> FileAudio:
    """Open any input for block reads at its own rate and channel count.

    WAV/FLAC/AIFF are read in place through libsndfile. Anything else (mp3,
    m4a/aac, ogg/opus, video) is decoded once by ffmpeg, streaming, into a
    temporary float WAV (RF64 past 4 GB) that is deleted on close.
    """
    path = check_input_path(path)
    if path.suffix.lower() in _SEEKABLE_SUFFIXES:
        try:
            source = FileAudio(path)
        except Exception:
            source = None
        if source is not None and source.num_frames > 0:
            return source
        if source is not None:
            source.close()
    info = probe(path)
    folder = Path(tempfile.mkdtemp(prefix="podsep-decode-"))
    target = folder / "decoded.wav"
    command = [
        ffmpeg_binary(), "-nostdin", "-v", "error", "-i", _ffmpeg_path(path), "-map", "0:a:0", "-vn",
        "-c:a", "pcm_f32le", "-ar", str(info["sample_rate"]), "-ac", str(info["channels"]),
        "-rf64", "auto", "-f", "wav", str(target),
    ]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not target.exists():
        shutil.rmtree(folder, ignore_errors=True)
        message = _first_line(result.stderr.decode("utf-8", "replace"), path) or "ffmpeg failed"
        raise InputError(f"cannot decode {path}: {message}")
    try:
        source = FileAudio(target, temporary=True, label=str(path))
    except Exception as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"cannot decode {path}: {error}") from error
    if source.num_frames == 0:
        source.close()
        raise InputError(f"input has no audio samples: {path}")
    return source


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
        "-of", "json", "-i", _ffmpeg_path(path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputError(f"cannot read {path}: {_first_line(result.stderr, path) or 'ffprobe failed'}")
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
        ffmpeg_binary(), "-nostdin", "-v", "error", "-i", _ffmpeg_path(path),
        "-map", "0:a:0", "-vn", "-f", "f32le", "-acodec", "pcm_f32le",
        "-ac", str(info["channels"]), "-ar", str(info["sample_rate"]), "-",
    ]
    # "-i" takes the path as a separate argument: no shell, no injection.
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = _first_line(result.stderr.decode("utf-8", "replace"), path) or "ffmpeg failed"
        raise InputError(f"cannot decode {path}: {message}")
    flat = np.frombuffer(result.stdout, dtype="<f4")
    channels = info["channels"]
    usable = (flat.size // channels) * channels
    samples = flat[:usable].reshape(-1, channels).T
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), info["sample_rate"])


def _ffmpeg_path(path: Path) -> str:
    """An absolute path, so names like ``-y.mp3`` or ``concat:x`` are just files."""
    return str(Path(path).resolve())


def _first_line(text: str, path: Path | None = None) -> str:
    """The first non-blank line of a tool's stderr, without the input path it starts with."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            if path is not None:
                line = line.removeprefix(f"{path}: ")
            return line[:200]
    return ""


def resampling_ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    """``(up, down)``: the exact rational ratio every podsep resampling uses."""
    divisor = math.gcd(int(from_rate), int(to_rate))
    return int(to_rate) // divisor, int(from_rate) // divisor


def polyphase(signal: np.ndarray, up: int, down: int) -> np.ndarray:
    """The one resampling filter of podsep (scipy's polyphase, default Kaiser window), float32 out."""
    if up == down:
        return np.asarray(signal, dtype=np.float32)
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(signal, dtype=np.float32), up, down, axis=-1).astype(np.float32, copy=False)


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling along the last axis (polyphase, exact rational ratio)."""
    if from_rate == to_rate:
        return np.asarray(signal, dtype=np.float32)
    up, down = resampling_ratio(from_rate, to_rate)
    out = polyphase(signal, up, down)
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


def stream_analysis_copy(source: "Audio | FileAudio", rate: int = ANALYSIS_RATE, block_seconds: float = 60.0) -> tuple[np.ndarray, float]:
    """Mono copy at ``rate``, computed block by block; also the input's peak level.

    Blocks start at multiples of the resampling ratio's denominator and carry
    padding on both sides, so the joined result equals resampling the whole
    signal at once (to float precision) while only one block is in memory.
    """
    up, down = resampling_ratio(source.sample_rate, rate)
    total = source.num_frames
    expected = int(round(total * rate / source.sample_rate))
    out = np.zeros(expected, dtype=np.float32)
    peak = 0.0
    step = max(1, int(block_seconds * source.sample_rate) // down) * down
    pad = max(1, int(0.25 * source.sample_rate) // down + 1) * down  # far longer than the filter's reach
    for start in range(0, total, step):
        stop = min(total, start + step)
        block = source.read(start, stop)
        if not np.all(np.isfinite(block)):  # a NaN peak would otherwise read as silence
            raise InputError(f"input decodes to NaN or infinite samples: {getattr(source, 'label', '<waveform>')}")
        peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
        left = source.read(max(0, start - pad), start).mean(axis=0)
        right = source.read(stop, min(total, stop + pad)).mean(axis=0)
        mono = block.mean(axis=0, dtype=np.float64).astype(np.float32)
        padded = np.concatenate([np.zeros(pad - left.size, np.float32), left, mono, right,
                                 np.zeros(pad - right.size, np.float32)])
        resampled = polyphase(padded, up, down)
        first = pad * up // down
        begin = start * up // down
        count = min(expected, int(round(stop * rate / source.sample_rate))) - begin
        out[begin:begin + count] = resampled[first:first + count]
    return out, peak


# -- writing ------------------------------------------------------------------------

def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class TrackWriter:
    """Writes one audio file block by block, under a temporary name until :meth:`commit`.

    WAV (16/24-bit PCM or float, RF64 past 4 GB) and FLAC go through libsndfile;
    MP3 is encoded by ffmpeg reading raw float samples from a pipe. Samples beyond
    full scale are clipped for integer formats and counted, so the caller can warn.
    """

    def __init__(self, path: Path, sample_rate: int, channels: int, *, fmt: str = "wav", bit_depth: str = "16",
                 display_path: Path | None = None) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise OutputError(f"unsupported output format '{fmt}' (choose from {', '.join(OUTPUT_FORMATS)})")
        subtype = WAV_SUBTYPES.get(bit_depth)
        if subtype is None or (fmt == "flac" and bit_depth == "float"):
            raise OutputError(f"unsupported bit depth '{bit_depth}' for {fmt}")
        self.path = Path(path)
        self.display_path = Path(display_path) if display_path is not None else self.path  # named in errors
        self.fmt = fmt
        self.clips = fmt == "mp3" or bit_depth != "float"
        self.scale = {"16": 2.0 ** 15, "24": 2.0 ** 23}.get(bit_depth) if fmt != "mp3" else None
        self.clipped_samples = 0
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.stem[:40]}.", suffix=f".partial.{fmt}", dir=self.path.parent)
        os.close(handle)
        self.temporary = Path(temporary)
        self._process: subprocess.Popen[bytes] | None = None
        self._file = None
        try:
            if fmt == "mp3":
                command = [
                    ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate),
                    "-ac", str(channels), "-i", "-", "-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3", _ffmpeg_path(self.temporary),
                ]
                self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            else:
                import soundfile

                container = "RF64" if fmt == "wav" else "FLAC"
                self._file = soundfile.SoundFile(str(self.temporary), "w", samplerate=sample_rate, channels=channels,
                                                 subtype=subtype, format=container)
        except BaseException:
            self.abort()
            raise

    def stored(self, block: np.ndarray) -> np.ndarray:
        """The samples the file will hold for ``block`` (clipped, and on the integer grid for PCM).

        podsep quantises integer formats itself (round to nearest, full scale =
        2^(bits-1)), so the caller knows exactly what was stored: the background
        track is computed from the stored speaker tracks and the identity
        ``tracks + background = input`` holds to half a step. Quantisation starts
        from the block's own precision (a float64 background is not rounded to
        float32 first, which would cost 24-bit files an eighth of a step).
        """
        block = np.asarray(block)
        if self.clips:
            block = np.clip(block, -1.0, 1.0)
        if self.scale is not None:
            return (self._integers(block) / self.scale).astype(np.float64)
        return block.astype(np.float32)

    def _integers(self, block: np.ndarray) -> np.ndarray:
        assert self.scale is not None
        return np.clip(np.rint(np.asarray(block, dtype=np.float64) * self.scale), -self.scale, self.scale - 1)

    def write(self, block: np.ndarray) -> None:
        """Append ``(channels, n)`` float samples."""
        block = np.asarray(block)
        if block.dtype != np.float64:
            block = block.astype(np.float32)
        if self.clips:
            over = np.abs(block) > 1.0
            if over.any():
                self.clipped_samples += int(over.sum())
                block = np.clip(block, -1.0, 1.0)
        try:
            if self._process is not None:
                assert self._process.stdin is not None
                self._process.stdin.write(np.ascontiguousarray(block.T).astype("<f4").tobytes())
            elif self._file is not None:
                if self.scale is not None:  # integers on podsep's own grid (see stored)
                    ints = self._integers(block)
                    shift = 1 if self.scale == 2.0 ** 15 else 256  # 24-bit samples go in the top of an int32
                    dtype = np.int16 if self.scale == 2.0 ** 15 else np.int32
                    self._file.write(np.ascontiguousarray((ints * shift).astype(dtype).T))
                else:
                    self._file.write(np.ascontiguousarray(block.T, dtype=np.float32))
        except (OSError, RuntimeError) as error:
            raise OutputError(f"cannot write {self.display_path}: {self._failure_reason(error)}") from error

    def _failure_reason(self, error: BaseException) -> str:
        """The OS's reason for a failed write (disk full, file too large, quota...).

        libsndfile reports every failed write as "System error."; appending a little
        to the (doomed) temporary file repeats the failure with the real errno.
        """
        reason = getattr(error, "strerror", None)
        if reason:
            return str(reason)
        try:
            with open(self.temporary, "ab") as handle:
                handle.write(bytes(1 << 16))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as probe:
            return probe.strerror or str(probe)
        return str(error)

    def write_all(self, samples: np.ndarray) -> int:
        """Write a whole in-memory signal and commit (or abort on any error); return the clipped sample count."""
        try:
            self.write(samples)
        except BaseException:
            self.abort()
            raise
        self.commit()
        return self.clipped_samples

    def commit(self) -> None:
        """Finish the file and rename it to its final name."""
        try:
            if self._process is not None:
                assert self._process.stdin is not None
                self._process.stdin.close()
                error = self._process.stderr.read().decode("utf-8", "replace") if self._process.stderr else ""
                if self._process.wait() != 0:
                    raise OutputError(f"cannot encode {self.display_path}: {_first_line(error) or 'ffmpeg failed'}")
            elif self._file is not None:
                self._file.close()
            if self.fmt == "wav":
                _downgrade_rf64(self.temporary)
            os.chmod(self.temporary, 0o666 & ~current_umask())  # mkstemp makes 0600
            os.replace(self.temporary, self.path)
        except (OSError, RuntimeError) as error:  # RuntimeError: libsndfile failing to finish the file
            reason = self._failure_reason(error)
            self.abort()
            raise OutputError(f"cannot write {self.display_path}: {reason}") from error
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial file (on error or interruption)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(Exception):
                self._file.close()
        with contextlib.suppress(OSError):
            self.temporary.unlink()


def _downgrade_rf64(path: Path) -> None:
    """Files under 4 GB are written as plain RIFF WAV, which every tool reads.

    libsndfile's RF64 writer keeps a ``JUNK`` chunk reserved for the 64-bit
    sizes; when the file stayed small, the header is rewritten as ``RIFF``/``WAVE``
    with the same data (the reserved chunk is a legal chunk any reader skips).
    """
    size = path.stat().st_size
    if size >= 0xFFFFFFFF:
        return
    with open(path, "r+b") as handle:
        head = handle.read(12)
        if head[:4] != b"RF64":
            return
        handle.seek(0)
        handle.write(b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVE")
        # the ds64 chunk becomes JUNK so readers skip it
        handle.seek(12)
        if handle.read(4) == b"ds64":
            handle.seek(12)
            handle.write(b"JUNK")
        handle.seek(0)
        data = handle.read(4096)
        index = data.find(b"data")
        if index >= 0:
            handle.seek(index + 4)
            declared = int.from_bytes(data[index + 4:index + 8], "little")
            if declared == 0xFFFFFFFF:
                handle.write((size - index - 8).to_bytes(4, "little"))


def write_audio(path: Path, samples: np.ndarray, sample_rate: int, *, fmt: str = "wav", bit_depth: str = "16") -> bool:
    """Write ``(channels, frames)`` float audio atomically; return True if it had to clip."""
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    try:
        writer = TrackWriter(Path(path), sample_rate, samples.shape[0], fmt=fmt, bit_depth=bit_depth)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    return writer.write_all(samples) > 0
