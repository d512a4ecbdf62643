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

from .audio import current_umask, write_audio
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


def safe_name(text: str) -> str:
    """A file-name-safe version of a speaker name or stem (keeps letters of any script)."""
    text = unicodedata.normalize("NFC", text).strip()
    text = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", "_", text)
    text = text.strip(". ") or "unnamed"
    return text[:120]


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
    """Write everything into ``folder`` atomically; return the final paths by role."""
    check_destination(folder, overwrite)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name[:40]}.partial-", dir=folder.parent))
    except OSError as error:
        raise OutputError(f"cannot write into {folder.parent}: {error.strerror or error}") from error
    files: dict[str, Path] = {}
    try:
        clipped = []
        for speaker, samples in tracks.items():
            name = f"{safe_name(stem)}.{safe_name(speaker)}.{fmt}"
            if write_audio(staging / name, samples, sample_rate, fmt=fmt, bit_depth=bit_depth):
                clipped.append(speaker)
            files[f"track:{speaker}"] = folder / name
        if clipped:
            manifest.setdefault("warnings", []).append(
                f"tracks of {', '.join(clipped)} exceeded full scale and were clipped; use --bit-depth float to keep them"
            )
        rttm_name = f"{safe_name(stem)}.rttm"
        (staging / rttm_name).write_text(rttm, encoding="utf-8")
        files["rttm"] = folder / rttm_name
        manifest_name = f"{safe_name(stem)}.json"
        manifest["files"] = {role: path.name for role, path in files.items()}
        (staging / manifest_name).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        files["manifest"] = folder / manifest_name
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; the result is an ordinary folder
        _move_into_place(staging, folder, overwrite)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write results to {folder}: {error.strerror or error}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return files


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
