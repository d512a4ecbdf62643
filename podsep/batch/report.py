"""``OUT/batch-report.csv`` and the summary at the end of a batch.

The report lists every episode of the batch, whatever happened to it, so that
a spreadsheet or a script can check an archive run without reading logs:
``done`` (split now), ``skipped`` (already done with the same input and
settings), ``failed`` (with its one-line reason) or ``pending`` (the batch was
interrupted before reaching it). It is written atomically, also after Ctrl-C.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..export import write_atomically
from .inputs import Episode

REPORT_NAME = "batch-report.csv"
COLUMNS = ("episode", "status", "duration_s", "speakers", "overlap_s", "separated_regions", "wall_s", "error",
           "speaker_names", "output")
STATUSES = ("done", "skipped", "failed", "pending")


@dataclass
class Row:
    """One episode's line of the report."""

    episode: Episode
    status: str
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float | None = None

    def cells(self, output: Path) -> dict[str, Any]:
        speakers = self.summary.get("speakers")
        duration = self.summary.get("duration") or self.episode.duration
        try:
            where = self.episode.result_folder.relative_to(output)
        except ValueError:
            where = self.episode.result_folder
        return {
            "episode": self.episode.label,
            "status": self.status,
            "duration_s": f"{duration:.2f}" if duration is not None else "",
            "speakers": len(speakers) if speakers is not None else "",
            "overlap_s": self.summary.get("overlap_seconds", ""),
            "separated_regions": self.summary.get("separated_regions", ""),
            "wall_s": f"{self.wall_seconds:.2f}" if self.wall_seconds is not None else "",
            "error": self.error or "",
            "speaker_names": ";".join(speakers) if speakers else "",
            "output": str(where) if self.status in ("done", "skipped") else "",
        }


def write_report(output: Path, rows: Sequence[Row]) -> Path:
    """Write ``output/batch-report.csv`` in one rename; returns its path."""
    path = output / REPORT_NAME
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.cells(output))
    try:
        write_atomically(path, lambda temporary: temporary.write_text(buffer.getvalue(), encoding="utf-8", newline=""))
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    return path


def counts(rows: Sequence[Row]) -> dict[str, int]:
    """Episodes per status, every status present (zero when none)."""
    tally = Counter(row.status for row in rows)
    return {status: tally.get(status, 0) for status in STATUSES}


def audio_seconds(rows: Sequence[Row], status: str = "done") -> float:
    """Audio processed (or skipped, ...) in seconds."""
    return sum((row.summary.get("duration") or 0.0) for row in rows if row.status == status)


def summary_lines(rows: Sequence[Row], wall_seconds: float, report: Path) -> list[str]:
    """The end-of-batch summary as plain lines (the rich view renders the same numbers as a table)."""
    tally = counts(rows)
    processed = audio_seconds(rows)
    lines = [f"{tally['done']} done, {tally['skipped']} skipped (already done), {tally['failed']} failed"
             + (f", {tally['pending']} not reached" if tally["pending"] else "")
             + f" of {len(rows)} episodes in {_duration(wall_seconds)}"]
    if processed:
        lines.append(f"{processed / 3600:.2f} h of audio split: {processed / max(wall_seconds, 1e-9):.1f} audio hours "
                     "per wall hour")
    for row in rows:
        if row.status == "failed":
            lines.append(f"  failed: {row.episode.label}: {row.error}")
    lines.append(f"report: {report}")
    return lines


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
