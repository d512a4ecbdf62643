"""A batch from start to end: decide what needs work, run it on an engine, report.

The runner is the only place that knows the whole batch. It holds the output
folder's lock, computes each episode's key (settings that shape its result,
per-episode speaker hints and names, model identity), reads the status records
and decides (:func:`podsep.batch.state.decide`); probes the length of what
must run (for the memory check, the ETA and to start the longest first, which
shortens the tail of a parallel run); sizes the workers (free cores, memory);
then receives the engine's events as its ``sink`` and keeps the report. The
report is written whatever happens, Ctrl-C included.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import soundfile

from .. import __version__
from ..config import Settings
from ..errors import PodsepError
from . import state
from .inputs import Episode
from .progress import QuietView
from .report import Row, write_report
from .worker import Job, Outcome

ENGINES = ("local", "ray")
PROBE_THREADS = 8


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch (the settings of the splits themselves are a :class:`~podsep.config.Settings`)."""

    output: Path
    engine: str = "local"
    workers: int | None = None
    threads: int | None = None
    ray_address: str | None = None
    retry_failed: bool = False
    overwrite: bool = False
    hf_token: str | None = None


@dataclass
class BatchSummary:
    """What a batch did: one report row per episode, and the figures a benchmark wants."""

    rows: list[Row]
    report: Path
    wall_seconds: float
    engine: str = "local"
    workers: int = 0
    threads: int = 0
    startup_seconds: float | None = None
    peak_rss: dict[str, int] = field(default_factory=dict)
    ready_rss: dict[str, int] = field(default_factory=dict)
    overheads: list[float] = field(default_factory=list)
    split_seconds: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if row.status == "failed")


def probe_duration(path: Path) -> float | None:
    """Length in seconds from the file's header (libsndfile, else ffprobe), or None if unknown."""
    try:
        info = soundfile.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:
        pass
    try:
        from ..audio import ffmpeg_binary

        result = subprocess.run([ffmpeg_binary("ffprobe"), "-v", "error", "-show_entries", "format=duration",
                                 "-of", "default=noprint_wrappers=1:nokey=1", "-i", str(path.absolute())],
                                capture_output=True, text=True, timeout=60, check=False)
        return float(result.stdout.strip()) if result.returncode == 0 else None
    except (PodsepError, OSError, ValueError, subprocess.TimeoutExpired):
        return None


class _Sink:
    """Receives the engine's events, keeps the report rows and tells the view."""

    def __init__(self, rows: dict[int, Row], view: QuietView) -> None:
        self.rows, self.view = rows, view
        self.workers_of: dict[int, str] = {}
        self.in_flight: dict[int, Job] = {}
        self.warned: set[str] = set()
        self.first_ready: float | None = None
        self.peak_rss: dict[str, int] = {}
        self.ready_rss: dict[str, int] = {}
        self.overheads: list[float] = []
        self.split_seconds: list[float] = []

    def worker_starting(self, name: str) -> None:
        pass

    def worker_ready(self, name: str, warnings: Sequence[str], peak_rss: int) -> None:
        if self.first_ready is None:
            self.first_ready = time.perf_counter()
        self.ready_rss[name] = peak_rss
        self.view.worker_ready(name)
        for message in warnings:
            self.warn(message)

    def warn(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            self.view.warning(message)

    def started(self, job: Job, worker: str) -> None:
        self.in_flight[job.index] = job
        self.workers_of[job.index] = worker
        self.view.started(job.episode.label, worker)

    def stage(self, index: int, stage: str) -> None:
        worker = self.workers_of.get(index)
        if worker is not None:
            self.view.stage(worker, stage)

    def retrying(self, job: Job, why: str) -> None:
        self.in_flight.pop(job.index, None)
        self.view.finished(job.episode.label, self.workers_of.get(job.index), "retrying", None, 0.0, None)
        self.view.note(f"{job.episode.label}: {why}; trying it once more on a fresh worker")
        prefix = job.episode.result_folder.name[:40]
        if not any(j.episode.output_parent == job.episode.output_parent and j.episode.result_folder.name[:40] == prefix
                   for j in self.in_flight.values()):
            state.clean_staging(job.episode)

    def finished(self, job: Job, outcome: Outcome, dispatch_seconds: float) -> None:
        self.in_flight.pop(job.index, None)
        for message in outcome.warnings:  # model fallbacks were said once already, at start-up
            if message not in self.warned:
                self.warn(f"{job.episode.label}: {message}")
        duration = outcome.summary.get("duration") or job.episode.duration
        row = Row(job.episode, "done" if outcome.status == state.DONE else "failed", outcome.error,
                  dict(outcome.summary), round(outcome.wall_seconds, 3))
        self.rows[job.index] = row
        if outcome.worker:
            self.peak_rss[outcome.worker] = max(self.peak_rss.get(outcome.worker, 0), outcome.peak_rss_bytes)
        if row.status == "done":
            self.overheads.append(max(0.0, dispatch_seconds - outcome.wall_seconds))
            self.split_seconds.append(outcome.wall_seconds)
        speakers = len(outcome.summary.get("speakers", [])) if outcome.summary else None
        self.view.finished(job.episode.label, self.workers_of.get(job.index), row.status, duration,
                           outcome.wall_seconds, speakers)
        if row.status == "failed":
            self.view.failure(job.episode.label, outcome.error or "failed")

    def tick(self) -> None:
        self.view.tick()


def run_batch(episodes: Sequence[Episode], settings: Settings, options: BatchOptions,
              view: QuietView | None = None) -> BatchSummary:
    """Split every episode that needs it; returns the summary (the report is on disk).

    Raises :class:`PodsepError` for what stops the whole batch (the output folder
    is locked or unwritable, a model cannot be loaded at all, too many workers for
    the memory); a failure of one episode is a row of the report instead.
    """
    if options.engine not in ENGINES:
        raise PodsepError(f"unknown engine '{options.engine}' (choose {' or '.join(ENGINES)})")
    if options.workers is not None and options.workers < 1:
        raise PodsepError(f"--workers must be at least 1, not {options.workers}")
    if options.threads is not None and options.threads < 1:
        raise PodsepError(f"--threads must be at least 1, not {options.threads}")
    view = view or QuietView()
    output = Path(options.output).absolute()
    if output.exists() and not output.is_dir():
        raise PodsepError(f"cannot create output folder {output}: File exists")
    started = time.perf_counter()
    with state.BatchLock(output):
        rows: dict[int, Row] = {}
        jobs = _plan(episodes, settings, options, rows, view)
        summary = BatchSummary([], output, 0.0, options.engine)
        sink = _Sink(rows, view)
        try:
            if jobs:
                _run(jobs, settings, options, sink, view, summary, len(episodes), rows)
            else:
                view.plan(len(episodes), 0, _count(rows, "skipped"), _count(rows, "failed"), 0.0, "")
        finally:
            for job in sink.in_flight.values():  # the engine has stopped its workers: nobody writes these now
                state.clean_staging(job.episode)
                state.release_unfinished(job.episode)
            planned = {job.index for job in jobs}
            ordered = [rows.get(i) or Row(e, "pending", "the batch stopped before it was split" if i in planned
                                          else None) for i, e in enumerate(episodes)]
            summary.rows = ordered
            summary.report = write_report(output, ordered)
            summary.wall_seconds = time.perf_counter() - started
            summary.peak_rss, summary.ready_rss, summary.overheads = sink.peak_rss, sink.ready_rss, sink.overheads
            summary.split_seconds = sink.split_seconds
            if sink.first_ready is not None:
                summary.startup_seconds = sink.first_ready - started
    return summary


def _count(rows: dict[int, Row], status: str) -> int:
    return sum(1 for row in rows.values() if row.status == status)


def _plan(episodes: Sequence[Episode], settings: Settings, options: BatchOptions, rows: dict[int, Row],
          view: QuietView) -> list[Job]:
    """Decide every episode: rows for those skipped or failed already, jobs for the rest."""
    identities: dict[bool, dict[str, Any]] = {}
    jobs: list[Job] = []
    failures: list[tuple[str, str]] = []
    for index, episode in enumerate(episodes):
        hints = episode.hints()
        try:
            episode_settings = settings.with_overrides({f"diarization.{k}": v for k, v in hints.items()}) if hints \
                else settings
        except PodsepError as error:  # e.g. a list's min_speakers above the command line's --max-speakers
            rows[index] = Row(episode, "failed", str(error), {}, None)
            failures.append((episode.label, str(error)))
            continue
        given = episode.diarization is not None
        if given not in identities:  # once per batch (twice when some episodes bring their own RTTM)
            identities[given] = state.model_identity(settings, hf_token=options.hf_token, diarizer=not given)
        identity = identities[given]
        relevant = state.relevant_settings(episode_settings, given_diarization=given)
        key = state.episode_key(relevant, episode, identity)
        record = state.read_record(episode.record_path) if episode.problem is None else None
        decision = state.decide(episode, key, record, retry_failed=options.retry_failed, overwrite=options.overwrite)
        if decision.action == "skip":
            assert record is not None
            rows[index] = Row(episode, "skipped", None, dict(record.get("result") or {}), None)
            if decision.refresh_stat:  # same content, new mtime (copied, touched): remember, to skip hashing next time
                record["input"] = dict(record["input"], **state.input_stat(episode.path))
                _quietly(state.write_record, episode.record_path, record)
        elif decision.action == "fail":
            summary = dict(record.get("result") or {}) if record else {}
            rows[index] = Row(episode, "failed", decision.reason, summary, None)
            failures.append((episode.label, decision.reason))
        else:
            base = {"key": key, "settings": relevant, "models": identity, "names": list(episode.names or []),
                    "hints": hints, "diarization": episode.diarization, "engine": options.engine,
                    "podsep_version": __version__, "reason": decision.reason}
            jobs.append(Job(index, episode, key, decision.overwrite, base))
    for label, reason in failures:
        view.failure(label, reason)
    return jobs


def _quietly(function: Any, *args: Any) -> None:
    try:
        function(*args)
    except PodsepError:
        pass


def _run(jobs: list[Job], settings: Settings, options: BatchOptions, sink: _Sink, view: QuietView,
         summary: BatchSummary, total: int, rows: dict[int, Row]) -> None:
    """Probe, size the workers, clean up after killed runs, and hand the jobs to the engine."""
    from ..threads import free_cores, threads_per_worker
    from .local import check_memory, memory_plan, run_local

    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        durations = list(pool.map(lambda job: probe_duration(job.episode.path), jobs))
    jobs = [replace(job, episode=replace(job.episode, duration=d)) for job, d in zip(jobs, durations)]
    jobs.sort(key=lambda job: -(job.episode.duration if job.episode.duration is not None else float("inf")))
    known = [d for d in durations if d is not None]
    longest = max(known) if known else None
    diarizer = any(job.episode.diarization is None for job in jobs)
    plan = memory_plan(settings, longest, diarizer=diarizer)
    on_cluster = options.engine == "ray" and options.ray_address
    if on_cluster:
        workers = options.workers or 0  # 0: as many as the cluster has CPUs for (decided by the Ray engine)
        threads = options.threads or 1
        cores = 0
    else:
        cores = free_cores()
        if options.workers is None:
            workers = max(1, min(cores, plan.most_workers(), len(jobs)))
        else:
            workers = options.workers
            check_memory(plan, workers, longest)
        threads = options.threads or threads_per_worker(workers, cores)
    summary.workers, summary.threads = workers, threads
    for job in jobs:
        state.clean_staging(job.episode)
    engine = "Ray" if options.engine == "ray" else "local"
    where = f" at {options.ray_address}" if on_cluster else ""
    count = f"{workers}" if workers else "one per cluster CPU (or GPU)"
    how = f"{engine} engine{where}: {count} worker(s) x {threads} thread(s)"
    view.plan(total, len(jobs), _count(rows, "skipped"), _count(rows, "failed"), sum(known), how)
    if not on_cluster:
        if workers * threads > cores:
            view.note(f"{workers} worker(s) x {threads} thread(s) on {cores} free core(s): they will share cores")
        if workers == 1 and not plan.fits(1):
            view.warning(f"one worker may need about {plan.per_worker / 2**30:.1f} GB at peak but only "
                         f"{(plan.available or 0) / 2**30:.1f} GB is available")
    with view:
        if options.engine == "ray":
            from .ray_engine import run_ray

            run_ray(jobs, sink, settings=settings, hf_token=options.hf_token, workers=workers, threads=threads,
                    address=options.ray_address, memory_per_worker=plan.per_worker, diarizer=diarizer)
        else:
            run_local(jobs, sink, settings=settings, hf_token=options.hf_token, workers=workers, threads=threads,
                      diarizer=diarizer)
