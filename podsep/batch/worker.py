"""One worker of a batch: a loaded :class:`~podsep.pipeline.Splitter` and the code that runs one episode.

The local engine's processes and the Ray engine's actors both hold an
:class:`EpisodeWorker` and call :meth:`EpisodeWorker.run`, so the two engines
split the same way, byte for byte, and write the same status records: ``running``
when an episode starts, then ``done`` or ``failed`` with its one-line error, or
back to ``pending`` when the worker is stopped (Ctrl-C) mid-episode (``done`` if
the stop came after its result folder was renamed into place). Everything an
episode can raise becomes an :class:`Outcome`; nothing escapes to stop the batch
except an interruption.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import PodsepError
from . import state
from .inputs import Episode

_stop_requested = False


def request_stop() -> None:
    """Mark this worker process as being stopped (its SIGTERM handler calls this before raising).

    A stop can land where Python cannot raise it: inside an import (a half-imported module then fails
    with an ImportError), a weakref callback, a library's ``except Exception``. The episode then ends
    in an ordinary-looking error that is really the stop; :meth:`EpisodeWorker.run` checks this flag so
    that such an episode is recorded ``pending`` (redone by the next run), never ``failed``.
    """
    global _stop_requested
    _stop_requested = True


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called in this process."""
    return _stop_requested


@dataclass(frozen=True)
class Job:
    """One episode to split, as a worker receives it.

    ``record`` is what the status record says besides the status itself (key,
    settings, model identity, engine); ``attempt`` counts runs after a worker died.
    """

    index: int
    episode: Episode
    key: str
    overwrite: bool
    record: dict[str, Any]
    attempt: int = 1


@dataclass
class Outcome:
    """What became of one job (small and picklable: it travels back over a pipe or through Ray)."""

    index: int
    status: str
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    worker: str = ""
    peak_rss_bytes: int = 0


class _Listener:
    """The hook a worker gives the splitter: keeps warnings, passes stage changes on."""

    def __init__(self, index: int, on_stage: Callable[[int, str], None] | None) -> None:
        self.index, self.on_stage = index, on_stage
        self.warnings: list[str] = []
        self.stage = ""

    def __call__(self, step: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        stage = step.partition("/")[0]
        if stage != self.stage and stage != "done":
            self.stage = stage
            if self.on_stage is not None:
                self.on_stage(self.index, stage)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class EpisodeWorker:
    """Holds one Splitter (models loaded once) and splits episodes with it.

    ``threads`` is set for torch, OpenMP and BLAS before any model loads, so that
    the workers of a machine together use the cores it has free and no more.
    """

    def __init__(self, settings: Settings, *, hf_token: str | None, threads: int | None) -> None:
        from ..threads import configure_threads

        self.threads = configure_threads(threads)
        from ..pipeline import Splitter

        self.splitter = Splitter(settings, hf_token=hf_token)
        self.name = state.worker_name()

    def warm_up(self, *, diarizer: bool) -> list[str]:
        """Load the models now (not inside the first episode), returning their warnings.

        A model that cannot be loaded at all raises its one-line :class:`PodsepError`:
        every episode would fail the same way, so the batch stops instead.
        """
        messages: list[str] = []
        if diarizer:
            messages.extend(self.splitter.diarizer_status.warnings)
        if self.splitter.settings.overlaps.policy == "separate":
            messages.extend(self.splitter.separator_status.warnings)
        return messages

    def run(self, job: Job, on_stage: Callable[[int, str], None] | None = None) -> Outcome:
        """Split one episode; the status record says ``running`` meanwhile, then how it ended."""
        episode = job.episode
        started = time.perf_counter()
        record = dict(job.record, status=state.RUNNING, episode=episode.label, worker=self.name,
                      attempt=job.attempt, started_at=state.now(), error=None,
                      input=dict(state.input_stat(episode.path), path=str(episode.path)))
        record.pop("result", None)
        listener = _Listener(job.index, on_stage)
        before = _folder_identity(episode.result_folder)
        try:
            state.write_record(episode.record_path, record)
            result = self.splitter.split(episode.path, output_dir=episode.output_parent,
                                         names=list(episode.names) if episode.names else None,
                                         diarization=episode.diarization, overwrite=job.overwrite,
                                         hook=listener, **episode.hints())
            return self._done(job, record, result.manifest, started, listener)
        except (KeyboardInterrupt, SystemExit):
            self._record_interrupted(job, record, before, started, listener)
            raise
        except Exception as error:
            if stop_requested():  # the error is the stop, surfacing somewhere it could not be raised as such
                self._record_interrupted(job, record, before, started, listener)
                raise KeyboardInterrupt from error
            return self._episode_error(job, record, error, started, listener)

    def _episode_error(self, job: Job, record: dict[str, Any], error: Exception, started: float,
                       listener: _Listener) -> Outcome:
        """Record an episode that failed on its own (not by a stop) as ``failed``, in one line."""
        if isinstance(error, PodsepError):
            return self._failed(job, record, str(error), started, listener)
        if isinstance(error, MemoryError):
            return self._failed(job, record, "out of memory while splitting it (try fewer --workers or a smaller "
                                             "--batch-size)", started, listener)
        from ..models.hub import redact  # anything else is a bug: it costs one episode, not the batch

        first = str(error).splitlines()[0] if str(error) else ""
        message = redact(f"internal error: {type(error).__name__}: {first}")
        return self._failed(job, record, message, started, listener, details=redact(traceback.format_exc(limit=8)))

    def _done(self, job: Job, record: dict[str, Any], manifest: dict[str, Any], started: float,
              listener: _Listener) -> Outcome:
        """Record a finished episode as ``done`` (its result folder is in place) and say so."""
        summary = summarize(manifest)
        summary["manifest"] = (manifest.get("files") or {}).get("manifest")
        wall = time.perf_counter() - started
        record = dict(record, input=dict(record["input"], sha256=manifest["input"]["sha256"]))
        done = dict(record, status=state.DONE, finished_at=state.now(), wall_seconds=round(wall, 3),
                    result=summary, models_used=manifest.get("models"), warnings=list(manifest.get("warnings", [])))
        try:
            state.write_record(job.episode.record_path, done)
        except PodsepError as error:
            return self._failed(job, record, str(error), started, listener)
        return Outcome(job.index, state.DONE, None, summary, wall, listener.warnings, self.name, peak_rss_bytes())

    def _record_interrupted(self, job: Job, record: dict[str, Any], before: tuple[int, int] | None, started: float,
                            listener: _Listener) -> None:
        """The worker is being stopped mid-episode: say ``pending``, or ``done`` if the result got into place.

        The splitter renames its finished result folder into place a moment before
        it returns; a stop that lands between that rename and the ``done`` record
        would otherwise leave a complete result recorded as unfinished. A result
        folder that is new since the job began (absent before, or another folder
        now: the rename puts the staging folder's inode there) is this job's.
        """
        folder = job.episode.result_folder
        now = _folder_identity(folder)
        manifest = _read_manifest(folder) if now is not None and now != before else None
        if manifest is not None:
            try:
                self._done(job, record, manifest, started, listener)
                return
            except (KeyError, TypeError):
                pass  # not a manifest of this podsep: fall back to pending, the rerun redoes it
        self._safe_write(job.episode, dict(record, status=state.PENDING, error="interrupted"))

    def _failed(self, job: Job, record: dict[str, Any], message: str, started: float, listener: _Listener,
                details: str | None = None) -> Outcome:
        wall = time.perf_counter() - started
        record = dict(record, status=state.FAILED, error=message, finished_at=state.now(), wall_seconds=round(wall, 3))
        if details:
            record["traceback"] = details
        self._safe_write(job.episode, record)
        return Outcome(job.index, state.FAILED, message, {}, wall, listener.warnings, self.name, peak_rss_bytes())

    @staticmethod
    def _safe_write(episode: Episode, record: dict[str, Any]) -> None:
        try:
            state.write_record(episode.record_path, record)
        except PodsepError:
            pass  # the output folder went away or is read-only: the batch report still says what happened


def _folder_identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of a result folder, or None when there is none."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest inside a result folder, if it can be read: ``<name>.json``, the folder and the manifest
    both being named after the input's safe stem (:func:`podsep.export.result_folder`, ``ResultStaging``)."""
    try:
        manifest = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def summarize(manifest: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a batch report shows for one episode, from its manifest."""
    overlaps = manifest.get("overlaps", [])
    return {
        "duration": manifest["input"]["duration"],
        "speakers": [s["name"] for s in manifest.get("speakers", [])],
        "overlap_seconds": round(sum(o["end"] - o["start"] for o in overlaps), 2),
        "separated_regions": sum(1 for o in overlaps if o.get("handling") == "separated"),
        "overlap_policy": manifest.get("overlap_policy"),
    }


def failed_record(job: Job, message: str) -> None:
    """Record a failure the worker could not record itself (it died while splitting)."""
    record = dict(job.record, status=state.FAILED, episode=job.episode.label, error=message, attempt=job.attempt,
                  finished_at=state.now(), input=dict(state.input_stat(job.episode.path), path=str(job.episode.path)))
    try:
        state.write_record(job.episode.record_path, record)
    except PodsepError:
        pass
