"""Writing a result folder: tracks, RTTM and manifest, all or nothing.

Everything is written into a hidden temporary folder beside the destination and
then renamed into place in one step, so an interrupted run leaves no partial
folder under the final name. An existing result folder is only replaced with
``overwrite=True`` (swap by rename, then the old one is deleted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from .audio import TrackWriter, current_umask
from .errors import OutputError


def result_folder(output_dir: str | os.PathLike[str], stem: str) -> Path:
    return Path(output_dir) / safe_name(stem)


def check_destination(folder: Path, overwrite: bool) -> None:
    """Fail before any work if the result folder exists (without overwrite) or cannot be created."""
    if folder.exists() and not overwrite:
        raise OutputError(f"output {folder} already exists (use --overwrite to replace it)")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder")
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {parent}: {error.strerror or error}") from error
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable")


def write_atomically(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)`` on a file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the whole new one, never half of it; the file
    gets the permissions an ordinary file would (mkstemp makes 0600), and the
    temporary file is removed when writing fails.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def safe_name(text: str) -> str:
    """A file-name-safe version of a speaker name or stem (keeps letters of any script)."""
    text = unicodedata.normalize("NFC", text).strip()
    text = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", "_", text)
    text = text.strip(". ") or "unnamed"
    return text[:120]


class ResultStaging:
    """A hidden folder beside the destination that becomes the result folder in one rename.

    Tracks are streamed into it (:meth:`track_writer`), then :meth:`finish` adds
    the RTTM and manifest and moves it into place; :meth:`abort` (or any error)
    removes it, so nothing partial ever appears under the final name.
    """

    def __init__(self, folder: Path, stem: str, *, overwrite: bool) -> None:
        check_destination(folder, overwrite)
        self.folder = folder
        self.stem = safe_name(stem)
        self.overwrite = overwrite
        self.files: dict[str, Path] = {}
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".{folder.name[:40]}.partial-", dir=folder.parent))
        except OSError as error:
            raise OutputError(f"cannot write into {folder.parent}: {error.strerror or error}") from error

    def track_writer(self, speaker: str, sample_rate: int, channels: int, *, fmt: str, bit_depth: str) -> TrackWriter:
        name = f"{self.stem}.{safe_name(speaker)}.{fmt}"
        self.files[f"track:{speaker}"] = self.folder / name
        try:
            return TrackWriter(self.path / name, sample_rate, channels, fmt=fmt, bit_depth=bit_depth,
                               display_path=self.folder / name)
        except OSError as error:
            raise OutputError(f"cannot write into {self.folder.parent}: {error.strerror or error}") from error

    def background_writer(self, sample_rate: int, channels: int, *, fmt: str, bit_depth: str) -> TrackWriter:
        """The writer of ``<stem>.background.<fmt>`` (what no speaker was given)."""
        name = f"{self.stem}.background.{fmt}"
        self.files["background"] = self.folder / name
        try:
            return TrackWriter(self.path / name, sample_rate, channels, fmt=fmt, bit_depth=bit_depth,
                               display_path=self.folder / name)
        except OSError as error:
            raise OutputError(f"cannot write into {self.folder.parent}: {error.strerror or error}") from error

    def finish(self, rttm: str, manifest: dict[str, Any]) -> dict[str, Path]:
        try:
            rttm_name = f"{self.stem}.rttm"
            (self.path / rttm_name).write_text(rttm, encoding="utf-8")
            self.files["rttm"] = self.folder / rttm_name
            manifest_name = f"{self.stem}.json"
            self.files["manifest"] = self.folder / manifest_name
            manifest["files"] = {role: path.name for role, path in self.files.items()}
            text = json.dumps(manifest, indent=2, ensure_ascii=False, default=json_default) + "\n"
            (self.path / manifest_name).write_text(text, encoding="utf-8")
            os.chmod(self.path, 0o777 & ~current_umask())  # mkdtemp makes 0700; the result is an ordinary folder
            _move_into_place(self.path, self.folder, self.overwrite)
        except OSError as error:
            self.abort()
            raise OutputError(f"cannot write results to {self.folder}: {error.strerror or error}") from error
        except BaseException:
            self.abort()
            raise
        return dict(self.files)

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def json_default(value: Any) -> Any:
    """numpy scalars and paths in a manifest as JSON values (``json.dumps(..., default=json_default)``)."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_result(
    folder: Path,
    stem: str,
    tracks: dict[str, np.ndarray],
    sample_rate: int,
    rttm: str,
    manifest: dict[str, Any],
    *,
    fmt: str,
    bit_depth: str,
    overwrite: bool,
) -> dict[str, Path]:
    """Write in-memory tracks, RTTM and manifest into ``folder`` atomically; return paths by role."""
    staging = ResultStaging(folder, stem, overwrite=overwrite)
    try:
        clipped = []
        for speaker, samples in tracks.items():
            samples = np.atleast_2d(samples)
            writer = staging.track_writer(speaker, sample_rate, samples.shape[0], fmt=fmt, bit_depth=bit_depth)
            if writer.write_all(samples):
                clipped.append(speaker)
        if clipped:
            manifest.setdefault("warnings", []).append(clipping_warning(clipped))
    except BaseException:
        staging.abort()
        raise
    return staging.finish(rttm, manifest)


def clipping_warning(speakers: list[str]) -> str:
    return f"tracks of {', '.join(speakers)} exceeded full scale and were clipped; use --bit-depth float to keep them"


def _move_into_place(staging: Path, folder: Path, overwrite: bool) -> None:
    if not folder.exists():
        try:
            os.rename(staging, folder)
            return
        except OSError:
            if not (folder.exists() and overwrite):
                raise
    if not overwrite:
        raise OutputError(f"output {folder} appeared while podsep was running (another run?); nothing was replaced")
    retired = Path(tempfile.mkdtemp(prefix=f".{folder.name[:40]}.old-", dir=folder.parent))
    os.rmdir(retired)
    os.rename(folder, retired)
    os.rename(staging, folder)
    shutil.rmtree(retired, ignore_errors=True)
