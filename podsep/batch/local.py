"""The local engine: ``--workers N`` processes on this machine, each holding one loaded Splitter.

Processes, not threads: the models hold the GIL in places and a crashed or
killed worker must not take the batch with it. Each worker is started with
``spawn`` (a clean interpreter, no copied torch state), sets its CPU threads
(the machine's free cores divided between the workers), loads its models once
and then takes one episode at a time over a pipe. The driver hands out work,
relays what each worker is doing to the progress view, and watches the workers'
process handles: an episode whose worker dies is given once more to a fresh
worker (a stray kill should not fail it) and failed if that worker dies too
(the episode itself kills workers, e.g. out of memory).

Before anything starts, :func:`check_memory` refuses a worker count whose
expected peak memory does not fit what the machine has available.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ..config import Settings
from ..errors import PodsepError
from . import worker as worker_module
from .worker import Job, Outcome

GB = 1024 ** 3
#: Expected peak resident memory of one worker, by part. "measured": this project's 2-core machine, embedded
#: diarizer, --overlap duplicate (after loading: 0.70 GB; after a 15 s episode 0.83 GB, 10 min 1.15 GB,
#: 30 min 1.77 GB); "README": the whole-pipeline figures there (pyannote pipeline 1.4 GB, full-size SepFormer
#: 2.3 GB, 3 h with the embedded diarizer 2.31 GB). See docs/batch.md.
MEMORY_PARTS = {
    "process": 0.55 * GB,            # interpreter, torch, podsep (measured)
    "embedded_diarizer": 0.30 * GB,  # Silero VAD, GE2E, overlap detector and their first buffers (measured)
    "pyannote": 1.0 * GB,            # community-1 pipeline with its embeddings (README)
    "sepformer": 1.6 * GB,           # full-size SepFormer on windows up to 30 s (README)
    "embedded_separator": 0.3 * GB,  # a few MB of weights; buffers of 30 s windows (estimate)
}
#: Per hour of the longest episode: steep within one diarization chunk (all its embeddings are compared
#: pairwise: measured 1.9 GB/h between 10 and 30 min), flat beyond (chunks are diarized one at a time).
PER_HOUR_IN_CHUNK = 1.9 * GB
PER_HOUR_BEYOND = 0.3 * GB
MEMORY_HEADROOM = 0.9  # use at most this share of the memory available now
STOP_GRACE_SECONDS = 10.0  # how long interrupted workers get to clean up before they are killed
DEATHS_BEFORE_GIVING_UP = 3  # workers dying before any becomes ready: something is wrong with all of them


@dataclass(frozen=True)
class MemoryPlan:
    """Expected peak memory of one worker and what the machine has available."""

    per_worker: float
    available: float | None
    parts: tuple[str, ...]

    def fits(self, workers: int) -> bool:
        return self.available is None or workers * self.per_worker <= self.available * MEMORY_HEADROOM

    def most_workers(self) -> int:
        if self.available is None:
            return 1 << 30
        return max(0, int(self.available * MEMORY_HEADROOM // self.per_worker))


def available_memory() -> float | None:
    """Bytes available for new work (``MemAvailable``, capped by a cgroup memory limit), if known."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = float(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = open(limit_file, encoding="ascii").read().strip()
            usage = float(open(usage_file, encoding="ascii").read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and float(limit) < 1 << 60:
            room = float(limit) - usage
            available = room if available is None else min(available, room)
        break
    return available


def memory_plan(settings: Settings, longest_seconds: float | None, *, diarizer: bool = True) -> MemoryPlan:
    """Expected peak per worker for these settings and the longest episode to split."""
    parts = ["process"]
    if diarizer:  # auto loads pyannote when it can, the embedded diarizer only when it cannot: plan for the larger
        parts.append("embedded_diarizer" if settings.diarization.backend == "embedded" else "pyannote")
    if settings.overlaps.policy == "separate":
        backend = settings.separation.backend
        parts.append("sepformer" if backend in ("auto", "sepformer") else "embedded_separator")
    per_worker = sum(MEMORY_PARTS[p] for p in parts)
    hours = (longest_seconds or 0.0) / 3600.0
    chunk = settings.diarization.chunk_minutes / 60.0 if settings.diarization.chunk_minutes > 0 else hours
    per_worker += min(hours, chunk) * PER_HOUR_IN_CHUNK + max(0.0, hours - chunk) * PER_HOUR_BEYOND
    return MemoryPlan(per_worker, available_memory(), tuple(parts))


def check_memory(plan: MemoryPlan, workers: int, longest_seconds: float | None) -> None:
    """Refuse ``workers`` when their expected peak memory does not fit, saying why."""
    if workers <= 1 or plan.fits(workers):
        return
    longest = f"{longest_seconds / 3600:.1f} h" if longest_seconds else "unknown length"
    most = plan.most_workers()
    advice = f"use --workers {most} or fewer" if most >= 1 else "use --workers 1"
    raise PodsepError(
        f"{workers} workers would need about {workers * plan.per_worker / GB:.1f} GB at peak "
        f"({plan.per_worker / GB:.1f} GB each: {', '.join(p.replace('_', ' ') for p in plan.parts)}, "
        f"longest episode {longest}) but "
        f"{(plan.available or 0) / GB:.1f} GB is available; {advice}")


# -- the worker process -----------------------------------------------------------------------------


def _quiet_interrupts(unraisable: Any) -> None:
    """Python cannot raise an exception from inside some callbacks (importlib's module locks, weakref
    finalisers) and prints it as "Exception ignored ... Traceback" instead. A worker's stop signal can land
    there; then it is not printed but sent again, so that it stops the worker at the next ordinary line
    (swallowed, the worker would split on until the driver kills it, and its record would say "running").
    Anything else is printed."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), signal.SIGTERM)
        return
    sys.__unraisablehook__(unraisable)


def _worker_main(connection: Connection, settings: Settings, hf_token: str | None, threads: int,
                 diarizer: bool) -> None:
    """Entry point of a worker process: load once, then split what the driver sends until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver decides

    def stop(*_: Any) -> None:
        worker_module.request_stop()  # an error the stop causes where it cannot be raised is the stop too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # the driver stops workers with SIGTERM: clean up, then exit
    sys.unraisablehook = _quiet_interrupts  # a stop landing inside a callback is not a traceback for the user
    from ..cli.main import _quiet_libraries

    _quiet_libraries()
    try:
        try:
            episode_worker = worker_module.EpisodeWorker(settings, hf_token=hf_token, threads=threads)
            messages = episode_worker.warm_up(diarizer=diarizer)
        except PodsepError as error:
            connection.send(("fatal", str(error)))
            return
        except Exception as error:  # never a traceback from a worker: one line, through the driver
            connection.send(("fatal", f"internal error while loading the models: {_first_line(error)}"))
            return
        connection.send(("ready", messages, os.getpid(), worker_module.peak_rss_bytes()))

        def on_stage(index: int, stage: str) -> None:
            connection.send(("stage", index, stage))

        while True:
            job = connection.recv()
            if job is None:
                return
            outcome = episode_worker.run(job, on_stage)
            connection.send(("outcome", outcome))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return
    except Exception as error:  # a bug outside any episode: say it in one line, then end
        with contextlib.suppress(Exception):
            connection.send(("fatal", f"internal error in a worker: {_first_line(error)}"))
    finally:  # from here on a SIGTERM simply ends the process (no KeyboardInterrupt inside interpreter exit)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _first_line(error: BaseException) -> str:
    from ..models.hub import redact

    text = str(error).strip().splitlines()
    return redact(f"{type(error).__name__}: {text[0] if text else ''}")


# -- the driver -----------------------------------------------------------------------------------------


class _Slot:
    """One worker process as the driver sees it."""

    def __init__(self, number: int, process: Any, connection: Connection) -> None:
        self.number, self.process, self.connection = number, process, connection
        self.ready = False
        self.job: Job | None = None
        self.dispatched = 0.0


def run_local(jobs: list[Job], sink: Any, *, settings: Settings, hf_token: str | None, workers: int,
              threads: int, diarizer: bool = True) -> None:
    """Split ``jobs`` with ``workers`` processes; every outcome goes to ``sink.finished``.

    ``sink`` is the batch runner (see :mod:`podsep.batch.runner`): it is told when
    workers are ready, when episodes start and change stage, and how they end.
    """
    context = multiprocessing.get_context("spawn")
    queue = collections.deque(jobs)
    slots: list[_Slot] = []
    numbers = iter(range(1, 1 << 30))
    deaths_before_ready = 0
    any_ready = False

    def start() -> _Slot:
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=_worker_main, args=(theirs, settings, hf_token, threads, diarizer),
                                  name="podsep-worker", daemon=True)
        with _sigint_ignored():  # inherited through exec: a Ctrl-C while the child starts up is the driver's
            process.start()
        theirs.close()
        slot = _Slot(next(numbers), process, ours)
        sink.worker_starting(slot.number)
        return slot

    def handle(slot: _Slot, message: tuple[Any, ...]) -> None:
        nonlocal any_ready
        kind = message[0]
        if kind == "ready":
            slot.ready, any_ready = True, True
            sink.worker_ready(f"worker {slot.number}", message[1], message[3])
        elif kind == "fatal":
            raise PodsepError(message[1])
        elif kind == "stage":
            sink.stage(message[1], message[2])
        elif kind == "outcome":
            outcome: Outcome = message[1]
            job, slot.job = slot.job, None
            sink.finished(job, outcome, time.perf_counter() - slot.dispatched)

    def bury(slot: _Slot) -> None:
        """A worker process ended: read what it managed to say, then retry or fail its episode."""
        nonlocal deaths_before_ready
        try:
            while slot.connection.poll():
                handle(slot, slot.connection.recv())
        except (EOFError, OSError):
            pass
        slot.process.join(timeout=1)
        slots.remove(slot)
        slot.connection.close()
        if not slot.ready:
            deaths_before_ready += 1
            if not any_ready and deaths_before_ready >= DEATHS_BEFORE_GIVING_UP:
                raise PodsepError(f"worker processes keep dying while loading the models "
                                  f"({_describe_exit(slot.process.exitcode)}; out of memory?)")
        died = _describe_exit(slot.process.exitcode)
        if slot.job is not None:
            job = slot.job
            if job.attempt < 2:
                sink.retrying(job, f"worker {slot.number} {died}")
                queue.appendleft(Job(job.index, job.episode, job.key, True, job.record, job.attempt + 1))
            else:
                text = f"its worker process {died} twice while splitting it (out of memory?)"
                worker_module.failed_record(job, text)
                sink.finished(job, Outcome(job.index, "failed", text), 0.0)
        if queue and len(slots) < workers:
            slots.append(start())

    try:
        for _ in range(min(workers, len(queue))):
            slots.append(start())
        while slots and (queue or any(s.job is not None for s in slots)):
            for slot in slots:
                if slot.ready and slot.job is None and queue:
                    job = queue.popleft()
                    slot.job, slot.dispatched = job, time.perf_counter()
                    sink.started(job, f"worker {slot.number}")
                    slot.connection.send(job)
            handles = {s.connection: s for s in slots}
            sentinels = {s.process.sentinel: s for s in slots}
            for ready in wait(list(handles) + list(sentinels), timeout=0.5):
                if ready in handles:
                    slot = handles[ready]
                    try:
                        message = slot.connection.recv()
                    except (EOFError, OSError):
                        continue  # the process is gone: its sentinel says so
                    handle(slot, message)
                elif sentinels[ready] in slots:
                    bury(sentinels[ready])
            sink.tick()
        for slot in slots:
            if slot.process.is_alive():
                slot.connection.send(None)
        for slot in slots:
            slot.process.join(timeout=30)
    finally:
        _stop(slots)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while a worker is started, so that the new interpreter starts with it ignored.

    Python only installs its KeyboardInterrupt handler when SIGINT is at its
    default, so a worker never dies of a Ctrl-C meant for the driver, not even
    while it is still importing. Outside the main thread this is not possible
    (nor needed: the caller then handles signals itself).
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited (code {code})"


def _stop(slots: list[_Slot]) -> None:
    """Stop the workers still running: SIGTERM lets each put its episode back to pending, then kill."""
    alive = [s for s in slots if s.process.is_alive()]
    for slot in alive:
        try:
            slot.process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for slot in alive:
        slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=5)
    for slot in slots:
        try:
            slot.connection.close()
        except OSError:
            pass
