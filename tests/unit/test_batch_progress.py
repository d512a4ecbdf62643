"""What a batch prints: failures always (one line each), progress and summary unless ``-q``."""

from __future__ import annotations

import io
from pathlib import Path

from podsep.batch.inputs import Episode
from podsep.batch.progress import PlainView, QuietView, RichView
from podsep.batch.report import Row


def rows(tmp_path: Path) -> list[Row]:
    out = tmp_path / "out"
    return [Row(Episode(tmp_path / "a.wav", "s1/a.wav", out / "s1"), "done", None,
                {"duration": 120.0, "speakers": ["A", "B"]}, 2.0),
            Row(Episode(tmp_path / "b.wav", "s1/b.wav", out / "s1"), "skipped", None, {"duration": 60.0}, None),
            Row(Episode(tmp_path / "c.wav", "s1/c.wav", out / "s1"), "failed", "cannot read c.wav: Invalid data")]


def drive(view: QuietView, tmp_path: Path) -> None:
    view.plan(3, 2, 1, 0, 180.0, "local engine: 2 worker(s) x 1 thread(s)")
    with view:
        view.worker_ready("worker 1")
        view.started("s1/a.wav", "worker 1")
        view.stage("worker 1", "diarization")
        view.tick()
        view.finished("s1/a.wav", "worker 1", "done", 120.0, 2.0, 2)
        view.finished("s1/c.wav", "worker 2", "failed", None, 0.1, None)
        view.failure("s1/c.wav", "cannot read c.wav: Invalid data")
        view.warning("a warning")
    view.close(rows(tmp_path), 5.0, tmp_path / "out" / "batch-report.csv")


def test_quiet_prints_only_failures(tmp_path):
    stream = io.StringIO()
    drive(QuietView(stream), tmp_path)
    assert stream.getvalue().splitlines() == ["podsep: error: s1/c.wav: cannot read c.wav: Invalid data"]


def test_plain_lines_say_the_plan_each_episode_and_the_summary(tmp_path):
    stream = io.StringIO()
    drive(PlainView(stream), tmp_path)
    text = stream.getvalue()
    assert "podsep batch: 3 episodes: 2 to split (0.05 h of audio), 1 already done" in text
    assert "done 1/2 s1/a.wav (2 speakers, 120 s audio in 2.0 s; ETA" in text
    assert "podsep: error: s1/c.wav: cannot read c.wav: Invalid data" in text
    assert "1 done, 1 skipped (already done), 1 failed of 3 episodes" in text
    assert "  failed: s1/c.wav: cannot read c.wav: Invalid data" in text and "report: " in text


def test_rich_view_renders_the_overall_picture(tmp_path):
    from rich.console import Console

    buffer = io.StringIO()
    view = RichView(Console(file=buffer, width=140, force_terminal=False))
    view.plan(3, 2, 1, 0, 180.0, "local engine: 2 worker(s) x 1 thread(s)")
    view.worker_ready("worker 1")
    view.started("s1/a.wav", "worker 1")
    view.stage("worker 1", "diarization")
    view.console.print(view)
    live = buffer.getvalue()
    assert "episodes" in live and "0/2" in live and "remaining 2" in live and "worker 1" in live
    assert "s1/a.wav" in live and "diarization" in live
    buffer.truncate(0)
    view.close(rows(tmp_path), 5.0, tmp_path / "out" / "batch-report.csv")
    summary = buffer.getvalue()
    assert "podsep batch" in summary and "failed episodes" in summary and "cannot read c.wav" in summary
