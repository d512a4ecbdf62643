"""What a batch shows while it runs: a rich overall view on a terminal, plain lines otherwise.

A batch runs for hours; what its operator needs is the whole picture (episodes
done, failed and remaining, audio processed, an ETA from the audio still to
split, what each worker is doing), not one progress bar per stage of one file.
Failures are printed as they happen, one line each naming the file and the
reason, in every mode including ``-q``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .report import Row, counts, summary_lines


class QuietView:
    """``-q``: nothing but one line per failed episode (and the final error line from the CLI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = self.to_run = 0
        self.audio_total = self.audio_done = 0.0
        self.done = self.failed = self.failed_upfront = self.skipped = 0
        self.started_at = time.perf_counter()
        self.first_ready: float | None = None
        self.workers: dict[str, tuple[str, str, float]] = {}  # worker -> (episode, stage, since)

    # -- context (the rich view needs one) --------------------------------------------------------------------
    def __enter__(self) -> "QuietView":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    # -- events ---------------------------------------------------------------------------------------------
    def plan(self, total: int, to_run: int, skipped: int, failed: int, audio_seconds: float, how: str) -> None:
        self.total, self.to_run, self.audio_total = total, to_run, audio_seconds
        self.failed_upfront, self.skipped = failed, skipped

    def failure(self, label: str, reason: str) -> None:
        self.emit(f"podsep: error: {label}: {reason}")

    def warning(self, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def worker_ready(self, name: str) -> None:
        if self.first_ready is None:
            self.first_ready = time.perf_counter()

    def started(self, label: str, worker: str) -> None:
        self.workers[worker] = (label, "starting", time.perf_counter())

    def stage(self, worker: str, stage: str) -> None:
        if worker in self.workers:
            label, _, since = self.workers[worker]
            self.workers[worker] = (label, stage, since)

    def finished(self, label: str, worker: str | None, status: str, duration: float | None, wall: float,
                 speakers: int | None) -> None:
        self.workers.pop(worker or "", None)
        if status == "done":
            self.done += 1
            self.audio_done += duration or 0.0
        elif status == "failed":
            self.failed += 1

    def tick(self) -> None:
        pass

    def close(self, rows: list[Row], wall_seconds: float, report: Any) -> None:
        pass

    # -- helpers -------------------------------------------------------------------------------------------
    def emit(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def eta_seconds(self) -> float | None:
        """Time left: audio still to split over the audio rate so far (episode counts when lengths are unknown)."""
        if self.first_ready is None or not self.done:
            return None
        elapsed = time.perf_counter() - self.first_ready
        if self.audio_total and self.audio_done:
            remaining = max(0.0, self.audio_total - self.audio_done)
            return remaining * elapsed / self.audio_done
        left = self.to_run - self.done - self.failed
        return max(0, left) * elapsed / self.done


class PlainView(QuietView):
    """Plain lines for logs and pipes: the plan, one line per finished episode, the summary."""

    def plan(self, total: int, to_run: int, skipped: int, failed: int, audio_seconds: float, how: str) -> None:
        super().plan(total, to_run, skipped, failed, audio_seconds, how)
        audio = f" ({audio_seconds / 3600:.2f} h of audio)" if audio_seconds else ""
        self.emit(f"podsep batch: {total} episodes: {to_run} to split{audio}, {skipped} already done, "
                  f"{failed} failed without being split" + (f"; {how}" if to_run else ""))

    def warning(self, message: str) -> None:
        self.emit(f"podsep: warning: {message}")

    def note(self, message: str) -> None:
        self.emit(f"podsep: {message}")

    def finished(self, label: str, worker: str | None, status: str, duration: float | None, wall: float,
                 speakers: int | None) -> None:
        super().finished(label, worker, status, duration, wall, speakers)
        if status != "done":
            return
        finished = self.done + self.failed
        eta = self.eta_seconds()
        audio = f"{duration:.0f} s audio" if duration else "audio"
        self.emit(f"[{time.perf_counter() - self.started_at:7.1f}s] done {finished}/{self.to_run} {label} "
                  f"({speakers} speaker{'s' if speakers != 1 else ''}, {audio} in {wall:.1f} s"
                  + (f"; ETA {_clock(eta)}" if eta is not None else "") + ")")

    def close(self, rows: list[Row], wall_seconds: float, report: Any) -> None:
        for line in summary_lines(rows, wall_seconds, report):
            self.emit(line)


class RichView(QuietView):
    """A live overall view on a terminal: totals, audio hours, ETA and one line per worker."""

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.live: Any = None
        self.how = ""
        self.warned: list[str] = []

    def __enter__(self) -> "RichView":
        from rich.live import Live

        self.live = Live(self, console=self.console, refresh_per_second=4, transient=True)
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def plan(self, total: int, to_run: int, skipped: int, failed: int, audio_seconds: float, how: str) -> None:
        super().plan(total, to_run, skipped, failed, audio_seconds, how)
        self.how = how

    def emit(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def failure(self, label: str, reason: str) -> None:
        self.console.print(f"[red]podsep: error:[/red] {label}: {reason}", highlight=False, soft_wrap=True)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]podsep: warning:[/yellow] {message}", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        self.console.print(f"podsep: {message}", markup=False, highlight=False)

    def tick(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        finished = self.done + self.failed
        eta = self.eta_seconds()
        elapsed = time.perf_counter() - self.started_at
        rate = (self.audio_done / (time.perf_counter() - self.first_ready)
                if self.first_ready is not None and self.audio_done else None)
        head = Table.grid(padding=(0, 1))
        head.add_row(Text("episodes", style="bold"), ProgressBar(total=max(1, self.to_run), completed=finished, width=30),
                     Text(f"{finished}/{self.to_run}"),
                     Text(f"done {self.done}", style="green"), Text(f"failed {self.failed + self.failed_upfront}",
                          style="red" if self.failed + self.failed_upfront else ""),
                     Text(f"remaining {max(0, self.to_run - finished)}"),
                     Text(f"audio {self.audio_done / 3600:.2f}/{self.audio_total / 3600:.2f} h"),
                     Text(f"{rate:.1f} audio h/h" if rate else ""),
                     Text(f"elapsed {_clock(elapsed)}"), Text(f"ETA {_clock(eta)}" if eta is not None else "ETA -"))
        workers = Table.grid(padding=(0, 2))
        now = time.perf_counter()
        for name, (label, stage, since) in sorted(self.workers.items()):
            workers.add_row(Text(f"  {name}", style="cyan"), Text(label, overflow="ellipsis", no_wrap=True),
                            Text(stage), Text(_clock(now - since)))
        caption = Text(f"  {self.how}", style="dim")
        return Group(head, workers, caption)

    def close(self, rows: list[Row], wall_seconds: float, report: Any) -> None:
        from rich.table import Table

        if self.live is not None:
            self.live.stop()
            self.live = None
        tally = counts(rows)
        table = Table(title="podsep batch")
        for column in ("done", "skipped", "failed", "not reached", "audio split", "wall time", "audio h / wall h"):
            table.add_column(column, justify="right")
        processed = sum((r.summary.get("duration") or 0.0) for r in rows if r.status == "done")
        table.add_row(str(tally["done"]), str(tally["skipped"]), str(tally["failed"]), str(tally["pending"]),
                      f"{processed / 3600:.2f} h", _clock(wall_seconds),
                      f"{processed / max(wall_seconds, 1e-9):.1f}" if processed else "-")
        self.console.print(table)
        failed = [r for r in rows if r.status == "failed"]
        if failed:
            errors = Table(title="failed episodes", show_lines=False)
            errors.add_column("episode", overflow="fold")
            errors.add_column("reason", overflow="fold")
            for row in failed:
                errors.add_row(row.episode.label, row.error or "")
            self.console.print(errors)
        self.console.print(f"report: {report}", markup=False, highlight=False)


def make_view(quiet: bool) -> QuietView:
    """The view for this run: quiet, rich on a terminal, plain lines otherwise."""
    if quiet:
        return QuietView()
    if sys.stderr.isatty():
        return RichView()
    return PlainView()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
