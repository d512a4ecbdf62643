"""A REAPER project (``.rpp``) that opens with every track already in place.

REAPER's project format is plain text: nested ``<TAG ...>`` blocks holding
one setting per line. The project built here has the original on a muted track,
referenced by absolute path (the result folder never holds a copy), then one
track per speaker and the background track, each a single item at position 0
that refers to its file by a name relative to the project, so the folder can
be moved as a whole. Turns are regions named after their speaker; overlaps are
markers saying how they were handled.
"""

from __future__ import annotations

from pathlib import Path

from .labels import overlap_label
from .model import EditorInput

# REAPER names a source by its decoder; anything it reads through its video/ffmpeg
# decoder (m4a, mp4, mkv, webm, ...) is a VIDEO source.
_SOURCE_KINDS = {
    ".wav": "WAVE", ".wave": "WAVE", ".w64": "WAVE", ".aif": "WAVE", ".aiff": "WAVE", ".bwf": "WAVE",
    ".flac": "FLAC", ".mp3": "MP3", ".ogg": "VORBIS", ".oga": "VORBIS", ".opus": "OPUS",
}


def rpp_string(text: str) -> str:
    """Quote a value the way REAPER does: ``"..."``, else ``'...'`` or backticks when it holds quotes."""
    text = " ".join(str(text).splitlines())
    for quote in ('"', "'", "`"):
        if quote not in text:
            return f"{quote}{text}{quote}"
    return "`" + text.replace("`", "'") + "`"


def source_kind(file_name: str) -> str:
    return _SOURCE_KINDS.get(Path(file_name).suffix.lower(), "VIDEO")


def _seconds(value: float) -> str:
    return repr(float(value))


def _track(name: str, file: str, length: float, *, muted: bool) -> list[str]:
    return [
        "  <TRACK",
        f"    NAME {rpp_string(name)}",
        "    VOLPAN 1 0 -1 -1 1",
        f"    MUTESOLO {1 if muted else 0} 0 0",
        "    <ITEM",
        "      POSITION 0",
        "      SNAPOFFS 0",
        f"      LENGTH {_seconds(length)}",
        "      LOOP 0",
        f"      NAME {rpp_string(Path(file).name)}",
        "      SOFFS 0",
        f"      <SOURCE {source_kind(file)}",
        f"        FILE {rpp_string(file)}",
        "      >",
        "    >",
        "  >",
    ]


def project_text(data: EditorInput) -> str:
    """The project file's text."""
    length = data.num_samples / data.sample_rate if data.sample_rate and data.num_samples else data.duration
    lines = [
        '<REAPER_PROJECT 0.1 "6.0" 0',
        f"  SAMPLERATE {int(data.sample_rate) or 48000} 0 0",
        "  <NOTES 0 2",
        f"    |Made by podsep from {data.original_path or 'audio given in memory'}.",
        "    |Regions: speaker turns. Markers: overlapped speech and how it was handled.",
        "  >",
    ]
    index = 0
    for start, end, speaker in data.turns:
        index += 1
        lines.append(f"  MARKER {index} {_seconds(start)} {rpp_string(speaker)} 1")
        lines.append(f'  MARKER {index} {_seconds(end)} "" 1')
    for entry in sorted(data.overlaps, key=lambda e: float(e["start"])):
        index += 1
        lines.append(f"  MARKER {index} {_seconds(float(entry['start']))} {rpp_string(overlap_label(entry))} 0")
    if data.original_path:
        lines += _track(f"Original (muted): {Path(data.original_path).name}", data.original_path, length, muted=True)
    for speaker in data.speakers:
        if speaker in data.track_files:
            lines += _track(speaker, data.track_files[speaker], length, muted=False)
    if data.background_file:
        lines += _track("Background", data.background_file, length, muted=False)
    lines.append(">")
    return "\n".join(lines) + "\n"


def write_project(path: Path, data: EditorInput) -> Path:
    """Write ``<stem>.rpp`` next to the tracks it names."""
    path.write_text(project_text(data), encoding="utf-8", newline="\n")
    return path
