"""Progress renderers for the CLI: rich bars on a terminal, plain lines otherwise.

The library reports through ``hook(step_name, artifact, completed=, total=)``;
these classes are such hooks. Step names are stage names (``decode``,
``diarization``, ``separation``, ...), optionally with a sub-step after a slash
(``diarization/embeddings``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

STAGE_TITLES = {
    "decode": "Decoding audio",
    "diarization": "Diarizing speakers",
    "overlaps": "Finding overlaps",
    "adaptation": "Learning the voices",
    "separation": "Separating overlaps",
    "assignment": "Assigning sources",
    "assembly": "Assembling tracks",
    "export": "Writing files",
}


class RichProgress:
    """Per-stage bars with ETA on a terminal, and a summary table at the end."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def warning(self, message: str) -> None:
        """Warnings arrive on their own channel (see :mod:`podsep.hooks`)."""
        self.progress.console.print(f"[yellow]podsep: warning:[/yellow] {message}", markup=True, highlight=False)

    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None) -> None:
        stage, _, detail = step_name.partition("/")
        if stage == "done":
            self.progress.stop()
            self.console.print(summary_table(artifact))
            for line in summary_timeline(artifact):
                self.console.print(line)
            return
        title = STAGE_TITLES.get(stage, stage)
        if stage not in self.tasks:
            self._finish_open_rows()
            self.tasks[stage] = self.progress.add_task(title, total=None)
        key = step_name if detail else stage
        if detail and key not in self.tasks:  # each sub-step gets its own row, bar and count
            self._finish_open_rows(keep=stage)
            self.tasks[key] = self.progress.add_task(f"  {detail.replace('_', ' ')}", total=None)
        kwargs: dict[str, Any] = {}
        if total is not None:
            kwargs["total"] = total
        if completed is not None:
            kwargs["completed"] = completed
        if kwargs:
            self.progress.update(self.tasks[key], **kwargs)

    def _finish_open_rows(self, keep: str | None = None) -> None:
        """Close the rows of finished work (a new stage or sub-step began)."""
        for name, task_id in self.tasks.items():
            if name == keep:
                continue
            task = self.progress.tasks[task_id]
            if not task.finished:
                self.progress.update(task_id, completed=task.total or 1, total=task.total or 1)


class PlainProgress:
    """One log line per stage and per tenth of progress, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.current: str | None = None
        self.last_tenth = -1
        self.started = time.perf_counter()

    def warning(self, message: str) -> None:
        """Warnings arrive on their own channel (see :mod:`podsep.hooks`)."""
        print(f"podsep: warning: {message}", file=self.stream, flush=True)

    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None) -> None:
        stage, _, detail = step_name.partition("/")
        if stage == "done":
            print(summary_text(artifact), file=self.stream, flush=True)
            return
        if step_name != self.current:
            new_stage = self.current is None or stage != self.current.partition("/")[0]
            self.current, self.last_tenth = step_name, -1
            elapsed = f"[{time.perf_counter() - self.started:7.1f}s]"
            if new_stage:
                print(f"{elapsed} {STAGE_TITLES.get(stage, stage)}", file=self.stream, flush=True)
            if detail:
                print(f"{elapsed}   {detail.replace('_', ' ')}", file=self.stream, flush=True)
        if total and completed is not None and total > 1:
            tenth = int(10 * completed / total)
            if tenth > self.last_tenth:
                self.last_tenth = tenth
                print(f"           {completed}/{total}", file=self.stream, flush=True)


def summary_table(result: Any) -> Any:
    """A rich table: speakers, their times, overlaps and output files."""
    from rich.table import Table

    manifest = result.manifest
    table = Table(title="podsep result", show_lines=False)
    for column in ("speaker", "talk (s)", "alone (s)", "overlapped (s)", "file"):
        table.add_column(column)
    for speaker in manifest["speakers"]:
        path = result.files.get(f"track:{speaker['name']}")
        table.add_row(speaker["name"], f"{speaker['talk_time']:.1f}", f"{speaker['solo_time']:.1f}",
                      f"{speaker['overlap_time']:.1f}", str(path) if path else "-")
    if "background" in result.files:
        table.add_row("(background)", "-", "-", "-", str(result.files["background"]))
    overlaps = manifest["overlaps"]
    separated = sum(1 for o in overlaps if o["handling"] == "separated")
    table.caption = (f"{len(overlaps)} overlap region(s), {separated} separated; "
                     f"{manifest['real_time_factor']:.2f}x real time"
                     + (f"; {len(manifest['warnings'])} warning(s) in the manifest" if manifest["warnings"] else ""))
    learnt = adaptation_line(manifest)
    if learnt:
        table.caption += "\n" + learnt
    return table


def adaptation_line(manifest: dict[str, Any]) -> str | None:
    """What learning the voices did, in one line: it changes the overlaps more than any setting,
    and from the console alone a user could not tell a run that learnt from one that did not.
    ``None`` where it never applied (off, no overlaps, a separator that cannot learn)."""
    entry = manifest.get("adaptation") or {}
    if entry.get("mode", "off") == "off" or not manifest.get("overlaps") or "steps" not in entry:
        return None
    if entry.get("used"):
        scores = entry.get("validation_si_sdri_db") or {}
        before, after = scores.get("generic"), scores.get("adapted")
        detail = (f"; on mixtures of their held-out solo speech {before:.1f} -> {after:.1f} dB SI-SDRi"
                  if before is not None and after is not None else "")
        return f"voices learnt ({entry['steps']} steps{detail})" + _top_octave_note(entry)
    return f"voices not learnt: {entry.get('reason', 'no reason recorded')}" + _top_octave_note(entry)


def _top_octave_note(entry: dict[str, Any]) -> str:
    """What adapting the top-octave network did, where it ran (``adaptation.top_octave``)."""
    octave = entry.get("top_octave")
    if not octave:
        return ""
    scores = octave.get("validation_top_octave_snr_db") or {}
    before, after = scores.get("incoming"), scores.get("adapted")
    figures = f" ({before:.1f} -> {after:.1f} dB SNR)" if before is not None and after is not None else ""
    return f"; their top octave {'learnt' if octave.get('used') else 'not learnt'}{figures}"


def summary_timeline(result: Any, width: int = 60) -> list[Any]:
    """One rich line per speaker: when they talk, across the whole recording."""
    from ..editor import EditorInput, text_timeline

    stem = Path(str(result.manifest["input"]["source"])).stem or "audio"
    tracks = {s: result.files[f"track:{s}"].name for s in result.speakers if f"track:{s}" in result.files}
    data = EditorInput.from_manifest(result.manifest, result.diarization.turns, stem, tracks,
                                     result.files["background"].name if "background" in result.files else None)
    return text_timeline(data, width=width)


def summary_text(result: Any) -> str:
    manifest = result.manifest
    lines = []
    for speaker in manifest["speakers"]:
        path = result.files.get(f"track:{speaker['name']}")
        lines.append(f"{speaker['name']}: talk {speaker['talk_time']:.1f} s, alone {speaker['solo_time']:.1f} s, "
                     f"overlapped {speaker['overlap_time']:.1f} s -> {path or '-'}")
    if "background" in result.files:
        lines.append(f"background -> {result.files['background']}")
    overlaps = manifest["overlaps"]
    lines.append(f"{len(overlaps)} overlap region(s), {sum(o['handling'] == 'separated' for o in overlaps)} separated; "
                 f"{manifest['real_time_factor']:.2f}x real time")
    learnt = adaptation_line(manifest)
    if learnt:
        lines.append(learnt)
    return "\n".join(lines)
